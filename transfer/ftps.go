package transfer

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"

	"github.com/udmg/gateway/fsm"
)

// PartnerCerts parses a partner's tlsCert: one or more PEM certificates,
// each either the partner's own certificate (pinned) or a CA it chains to.
func PartnerCerts(pemCerts string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := []byte(pemCerts)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q is not a CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// partnerTLS is the client TLS configuration of an FTPS partner. Without a
// tlsCert the partner's certificate must chain to the system's CAs and name
// its host; with one, it must be one of those certificates or chain to one
// of them (a self-signed partner is pinned, as an SFTP partner's host key
// is). It never accepts an unchecked certificate.
func partnerTLS(p fsm.Partner) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(p.Address)
	if err != nil {
		return nil, fmt.Errorf("partner %s address: %w", p.Name, err)
	}
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if p.TLSCert == "" {
		return cfg, nil
	}
	pinned, err := PartnerCerts(p.TLSCert)
	if err != nil {
		return nil, fmt.Errorf("partner %s tlsCert: %w", p.Name, err)
	}
	roots := x509.NewCertPool()
	for _, c := range pinned {
		roots.AddCert(c)
	}
	// Go's own verification would also demand the host name in a pinned
	// self-signed certificate; VerifyConnection does the whole check.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return permanent(fsm.TeBadAuthentication, fmt.Errorf("partner %s presented no certificate", p.Name))
		}
		leaf := cs.PeerCertificates[0]
		for _, c := range pinned {
			if leaf.Equal(c) {
				return nil
			}
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host}); err != nil {
			return permanent(fsm.TeBadAuthentication, fmt.Errorf("partner %s: certificate is not the one in tlsCert nor signed by it: %w", p.Name, err))
		}
		return nil
	}
	return cfg, nil
}
