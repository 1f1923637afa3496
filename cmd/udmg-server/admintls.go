package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"github.com/udmg/gateway/authguard"
)

// serveAdminTLS serves the admin API over HTTPS as http.Server.ServeTLS
// does, with the certificate's handshake signatures in the login Guard's
// heavy-work slots (authguard), shared with the password comparisons, so
// that a storm of TLS handshakes on the API cannot take every core either.
func serveAdminTLS(srv *http.Server, ln net.Listener, certFile, keyFile string, g *authguard.Guard) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("[admin] TLSCert %s / TLSKey %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{}
	if srv.TLSConfig != nil {
		cfg = srv.TLSConfig.Clone()
	}
	cfg.Certificates = []tls.Certificate{g.TLSCertificate(cert)}
	srv.TLSConfig = cfg
	return srv.ServeTLS(ln, "", "")
}
