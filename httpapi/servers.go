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
	"net/url"
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

func (a *API) listServers(w http.ResponseWriter, r *http.Request, _ *principal) {
	listOf(w, r, "servers", copyOf(a.node, ofServers), nil, serverView)
}

func (a *API) getServer(w http.ResponseWriter, r *http.Request, _ *principal) {
	if s, ok := a.server(w, r); ok {
		writeJSON(w, http.StatusOK, serverView(s))
	}
}

func (a *API) server(w http.ResponseWriter, r *http.Request) (fsm.Server, bool) {
	name := r.PathValue("server")
	s, ok := lookup(a.node, ofServers, name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no server %q", name))
	}
	return s, ok
}

func (a *API) createServer(w http.ResponseWriter, r *http.Request, p *principal) {
	var in serverInput
	if !decodeJSON(w, r, &in) {
		return
	}
	if in.Name == nil || in.Protocol == nil || in.Port == nil {
		writeError(w, http.StatusBadRequest, `a new server needs "name", "protocol" and "port"`)
		return
	}
	s := fsm.Server{Enabled: true}
	if !a.fillServer(w, &s, in) {
		return
	}
	if !a.apply(w, "create server", fsm.Command{Op: fsm.OpServerPut, Put: fsm.PutCreate, Server: &s}) {
		return
	}
	a.log.Info("server created", "server", s.Name, "protocol", s.Protocol, "port", s.Port, "by", p.user)
	w.Header().Set("Location", "/api/servers/"+url.PathEscape(s.Name))
	writeJSON(w, http.StatusCreated, serverView(s))
}

func (a *API) updateServer(w http.ResponseWriter, r *http.Request, p *principal) {
	var in serverInput
	if !decodeJSON(w, r, &in) {
		return
	}
	s, ok := a.server(w, r)
	if !ok {
		return
	}
	if in.Name != nil && *in.Name != s.Name {
		writeError(w, http.StatusBadRequest, "name: a server cannot be renamed; create another and delete this one")
		return
	}
	if !a.fillServer(w, &s, in) || !a.apply(w, "update server", fsm.Command{Op: fsm.OpServerPut, Put: fsm.PutUpdate, Server: &s}) {
		return
	}
	a.log.Info("server changed", "server", s.Name, "by", p.user)
	writeJSON(w, http.StatusOK, serverView(s))
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

func (a *API) deleteServer(w http.ResponseWriter, r *http.Request, p *principal) {
	name := r.PathValue("server")
	if !a.apply(w, "delete server", fsm.Command{Op: fsm.OpServerDelete, Name: name}) {
		return
	}
	a.log.Info("server deleted", "server", name, "by", p.user)
	w.WriteHeader(http.StatusNoContent)
}

// serverSwitch answers PUT …/enable|start (on) and …/disable|stop (off):
// the ACTIVE node opens or closes the server within its poll period.
func (a *API) serverSwitch(on bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) {
		s, ok := a.server(w, r)
		if !ok {
			return
		}
		s.Enabled = on
		if !a.apply(w, "switch server", fsm.Command{Op: fsm.OpServerPut, Put: fsm.PutUpdate, Server: &s}) {
			return
		}
		a.log.Info("server switched", "server", s.Name, "enabled", on, "by", p.user)
		writeJSON(w, http.StatusAccepted, serverView(s))
	}
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

func (a *API) listAccounts(w http.ResponseWriter, r *http.Request, _ *principal) {
	srv, ok := a.server(w, r)
	if !ok {
		return
	}
	mine := func(acc fsm.LocalAccount) bool { return acc.Server == srv.Name }
	listOf(w, r, "accounts", filtered(a.node, ofAccounts, mine), nil, accountView)
}

func (a *API) account(w http.ResponseWriter, r *http.Request) (fsm.LocalAccount, bool) {
	server, login := r.PathValue("server"), r.PathValue("login")
	acc, ok := lookup(a.node, ofAccounts, fsm.AccountKey(server, login))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no account %q on server %q", login, server))
	}
	return acc, ok
}

func (a *API) getAccount(w http.ResponseWriter, r *http.Request, _ *principal) {
	if acc, ok := a.account(w, r); ok {
		writeJSON(w, http.StatusOK, accountView(acc))
	}
}

func (a *API) createAccount(w http.ResponseWriter, r *http.Request, p *principal) {
	var in accountInput
	if !decodeJSON(w, r, &in) {
		return
	}
	srv, ok := a.server(w, r)
	if !ok {
		return
	}
	if in.Login == nil || (in.Password == nil && in.PublicKeys == nil) {
		writeError(w, http.StatusBadRequest, `a new account needs "login" and a "password" or "publicKeys"`)
		return
	}
	if err := validName("login", *in.Login); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	acc := fsm.LocalAccount{Server: srv.Name, Login: *in.Login}
	if !a.allowedPath(w, "account "+acc.Login+" of server "+srv.Name+": home", path.Join(srv.Root, acc.Login), true) {
		return
	}
	if !fillAccount(w, &acc, in) || !a.apply(w, "create account", fsm.Command{Op: fsm.OpAccountPut, Put: fsm.PutCreate, Account: &acc}) {
		return
	}
	a.log.Info("account created", "server", srv.Name, "login", acc.Login, "by", p.user)
	w.Header().Set("Location", "/api/servers/"+url.PathEscape(srv.Name)+"/accounts/"+url.PathEscape(acc.Login))
	writeJSON(w, http.StatusCreated, accountView(acc))
}

func (a *API) updateAccount(w http.ResponseWriter, r *http.Request, p *principal) {
	var in accountInput
	if !decodeJSON(w, r, &in) {
		return
	}
	acc, ok := a.account(w, r)
	if !ok {
		return
	}
	if in.Login != nil && *in.Login != acc.Login {
		writeError(w, http.StatusBadRequest, "login: an account cannot be renamed")
		return
	}
	if !fillAccount(w, &acc, in) || !a.apply(w, "update account", fsm.Command{Op: fsm.OpAccountPut, Put: fsm.PutUpdate, Account: &acc}) {
		return
	}
	a.log.Info("account changed", "server", acc.Server, "login", acc.Login, "password_changed", in.Password != nil, "by", p.user)
	writeJSON(w, http.StatusOK, accountView(acc))
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

func (a *API) deleteAccount(w http.ResponseWriter, r *http.Request, p *principal) {
	server, login := r.PathValue("server"), r.PathValue("login")
	if !a.apply(w, "delete account", fsm.Command{Op: fsm.OpAccountDelete, Name: server, Sub: login}) {
		return
	}
	a.log.Info("account deleted", "server", server, "login", login, "by", p.user)
	w.WriteHeader(http.StatusNoContent)
}
