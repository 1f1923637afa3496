package httpapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"path"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
)

// serverInput is the body of POST, PUT and PATCH /api/servers…
type serverInput struct {
	Name       *string `json:"name"`
	Protocol   *string `json:"protocol"`
	Port       *int    `json:"port"`
	Root       *string `json:"root"`
	PassiveMin *int    `json:"passiveMin"`
	PassiveMax *int    `json:"passiveMax"`
	PublicHost *string `json:"publicHost"`
	TLS        *bool   `json:"tls"`
	// TLSCert and TLSKey (PEM) are the FTPS certificate; with tls and
	// neither given, a self-signed one is made.
	TLSCert     *string `json:"tlsCert"`
	TLSKey      *string `json:"tlsKey"`
	TLSRequired *bool   `json:"tlsRequired"`
	Enabled     *bool   `json:"enabled"`
}

func serverView(s fsm.Server) wire.Server {
	return wire.Server{Name: s.Name, Protocol: s.Protocol, Port: s.Port, Root: s.Root, PassiveMin: s.PassiveMin, PassiveMax: s.PassiveMax,
		PublicHost: s.PublicHost, TLS: s.TLS, TLSCert: s.TLSCert, TLSRequired: s.TLSRequired, Enabled: s.Enabled}
}

// servers are /api/servers/{server}: the SFTP and FTP listeners, which
// the ACTIVE node opens (PUT …/enable|start) and closes (…/disable|stop).
var servers = resource[fsm.Server, serverInput, wire.Server]{
	noun: "server", field: "servers", collection: "/api/servers", item: "/api/servers/{server}",
	pick: ofServers, view: serverView, pathOf: func(s fsm.Server) []string { return []string{s.Name} },
	complete: func(in serverInput) bool { return in.Name != nil && in.Protocol != nil && in.Port != nil },
	needs:    `a new server needs "name", "protocol" and "port"`,
	create: func(a *API, w http.ResponseWriter, _ *http.Request, in serverInput) (fsm.Server, bool) {
		s := fsm.Server{Enabled: true}
		ok := a.fillServer(w, &s, in)
		return s, ok
	},
	update: func(a *API, w http.ResponseWriter, s *fsm.Server, in serverInput) bool {
		return fixed(w, "name: a server cannot be renamed; create another and delete this one", same(in.Name, s.Name)) && a.fillServer(w, s, in)
	},
	put: func(m fsm.PutMode, s fsm.Server) fsm.Command {
		return fsm.Command{Op: fsm.OpServerPut, Put: m, Server: &s}
	},
	drop:       fsm.OpServerDelete,
	createdLog: func(s fsm.Server) []any { return []any{"protocol", s.Protocol, "port", s.Port} },
	switches:   []string{"enable", "disable", "start", "stop"},
	enabled:    func(s *fsm.Server) *bool { return &s.Enabled },
}

// fillServer applies the fields given to s and checks the result.
func (a *API) fillServer(w http.ResponseWriter, s *fsm.Server, in serverInput) bool {
	set(&s.Name, in.Name)
	set(&s.Protocol, in.Protocol)
	set(&s.Port, in.Port)
	set(&s.Root, in.Root)
	set(&s.PassiveMin, in.PassiveMin)
	set(&s.PassiveMax, in.PassiveMax)
	set(&s.PublicHost, in.PublicHost)
	set(&s.TLS, in.TLS)
	set(&s.TLSRequired, in.TLSRequired)
	set(&s.Enabled, in.Enabled)
	err := validName("name", s.Name)
	if err == nil {
		err = validProtocol("protocol", s.Protocol)
	}
	switch {
	case err != nil:
	case s.Port < 1 || s.Port > 65535:
		err = fmt.Errorf("port: %d is not from 1 to 65535", s.Port)
	case validLocalDir("root", s.Root) != nil:
		err = validLocalDir("root", s.Root)
	case s.PassiveMin != 0 || s.PassiveMax != 0:
		if s.Protocol != fsm.ProtoFTP || s.PassiveMin < 1024 || s.PassiveMax < s.PassiveMin || s.PassiveMax > 65535 {
			err = fmt.Errorf("passiveMin, passiveMax: %d-%d is not a port range within 1024-65535 of an ftp server", s.PassiveMin, s.PassiveMax)
		}
	}
	if err == nil && s.TLS && s.Protocol != fsm.ProtoFTP {
		err = fmt.Errorf("tls: explicit TLS is for ftp servers; sftp is encrypted already")
	}
	if err == nil && s.TLSRequired && !s.TLS {
		err = fmt.Errorf("tlsRequired: only for a server with tls")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	if !s.TLS {
		s.TLSCert, s.TLSKey = "", ""
		return true
	}
	cert, key := s.TLSCert, ""
	if in.TLSCert != nil || in.TLSKey != nil {
		if in.TLSCert == nil || in.TLSKey == nil {
			writeError(w, http.StatusBadRequest, "tlsCert, tlsKey: give both or neither")
			return false
		}
		if _, err := tls.X509KeyPair([]byte(*in.TLSCert), []byte(*in.TLSKey)); err != nil {
			writeError(w, http.StatusBadRequest, "tlsCert, tlsKey: "+err.Error())
			return false
		}
		cert, key = *in.TLSCert, *in.TLSKey
	} else if cert == "" {
		var err error
		if cert, key, err = selfSigned(s.Name); err != nil {
			writeError(w, http.StatusInternalServerError, "tls: "+err.Error())
			return false
		}
	}
	if key != "" {
		sealed, ok := a.seal(w, "tlsKey", key)
		if !ok {
			return false
		}
		s.TLSCert, s.TLSKey = cert, sealed
	}
	return true
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// selfSigned makes an FTPS certificate for a server given none.
func selfSigned(name string) (certPEM, keyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "udmg " + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})), nil
}

type accountInput struct {
	Login      *string   `json:"login"`
	Password   *string   `json:"password"`
	PublicKeys *[]string `json:"publicKeys"`
}

func accountView(a fsm.LocalAccount) wire.Account {
	keys := a.PublicKeys
	if keys == nil {
		keys = []string{}
	}
	return wire.Account{Login: a.Login, Server: a.Server, HasPassword: len(a.PasswordHash) > 0, PublicKeys: keys}
}

// accounts are /api/servers/{server}/accounts/{login}: who logs in to a
// server, by password or public key.
var accounts = resource[fsm.LocalAccount, accountInput, wire.Account]{
	noun: "account", field: "accounts", collection: "/api/servers/{server}/accounts", item: "/api/servers/{server}/accounts/{login}",
	pick: ofAccounts, view: accountView, pathOf: func(acc fsm.LocalAccount) []string { return []string{acc.Server, acc.Login} },
	missing:  func(v []string) error { return fmt.Errorf("no account %q on server %q", v[1], v[0]) },
	parent:   &servers,
	complete: func(in accountInput) bool { return in.Login != nil && (in.Password != nil || in.PublicKeys != nil) },
	needs:    `a new account needs "login" and a "password" or "publicKeys"`,
	create: func(a *API, w http.ResponseWriter, r *http.Request, in accountInput) (fsm.LocalAccount, bool) {
		srv, ok := servers.find(a, w, r)
		if !ok {
			return fsm.LocalAccount{}, false
		}
		if err := validName("login", *in.Login); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return fsm.LocalAccount{}, false
		}
		acc := fsm.LocalAccount{Server: srv.Name, Login: *in.Login}
		ok = a.allowedPath(w, "account "+acc.Login+" of server "+srv.Name+": home", path.Join(srv.Root, acc.Login), true) && fillAccount(w, &acc, in)
		return acc, ok
	},
	update: func(_ *API, w http.ResponseWriter, acc *fsm.LocalAccount, in accountInput) bool {
		return fixed(w, "login: an account cannot be renamed", same(in.Login, acc.Login)) && fillAccount(w, acc, in)
	},
	put: func(m fsm.PutMode, acc fsm.LocalAccount) fsm.Command {
		return fsm.Command{Op: fsm.OpAccountPut, Put: m, Account: &acc}
	},
	drop:       fsm.OpAccountDelete,
	changedLog: func(in accountInput) []any { return []any{"password_changed", in.Password != nil} },
}

// fillAccount hashes a new password and checks the public keys.
func fillAccount(w http.ResponseWriter, acc *fsm.LocalAccount, in accountInput) bool {
	if in.Password != nil {
		if *in.Password == "" {
			acc.PasswordHash = nil
		} else {
			hash, ok := hashPassword(w, *in.Password)
			if !ok {
				return false
			}
			acc.PasswordHash = hash
		}
	}
	if in.PublicKeys != nil {
		acc.PublicKeys = nil
		for i, line := range *in.PublicKeys {
			key, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("publicKeys[%d]: not an SSH public key in authorized_keys form: %v", i, err))
				return false
			}
			norm := string(ssh.MarshalAuthorizedKey(key))
			norm = norm[:len(norm)-1]
			if comment != "" {
				norm += " " + comment
			}
			acc.PublicKeys = append(acc.PublicKeys, norm)
		}
	}
	if len(acc.PasswordHash) == 0 && len(acc.PublicKeys) == 0 {
		writeError(w, http.StatusBadRequest, "password, publicKeys: an account needs at least one way to log in")
		return false
	}
	return true
}
