package httpapi

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/transfer"
)

type partnerInput struct {
	Name     *string `json:"name"`
	Protocol *string `json:"protocol"`
	Address  *string `json:"address"`
	HostKey  *string `json:"hostKey"`
	TLS      *bool   `json:"tls"`
	TLSCert  *string `json:"tlsCert"`
}

func partnerView(p fsm.Partner) wire.Partner {
	return wire.Partner{Name: p.Name, Protocol: p.Protocol, Address: p.Address, HostKey: p.HostKey, TLS: p.TLS, TLSCert: p.TLSCert}
}

func (a *API) listPartners(w http.ResponseWriter, r *http.Request, _ *principal) {
	listOf(w, r, "partners", copyOf(a.node, ofPartners), nil, partnerView)
}

func (a *API) partner(w http.ResponseWriter, r *http.Request) (fsm.Partner, bool) {
	name := r.PathValue("partner")
	p, ok := lookup(a.node, ofPartners, name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no partner %q", name))
	}
	return p, ok
}

func (a *API) getPartner(w http.ResponseWriter, r *http.Request, _ *principal) {
	if p, ok := a.partner(w, r); ok {
		writeJSON(w, http.StatusOK, partnerView(p))
	}
}

func (a *API) createPartner(w http.ResponseWriter, r *http.Request, pr *principal) {
	var in partnerInput
	if !decodeJSON(w, r, &in) {
		return
	}
	if in.Name == nil || in.Protocol == nil || in.Address == nil {
		writeError(w, http.StatusBadRequest, `a new partner needs "name", "protocol" and "address"`)
		return
	}
	var p fsm.Partner
	if !fillPartner(w, &p, in) || !a.apply(w, "create partner", fsm.Command{Op: fsm.OpPartnerPut, Put: fsm.PutCreate, Partner: &p}) {
		return
	}
	a.log.Info("partner created", "partner", p.Name, "protocol", p.Protocol, "address", p.Address, "by", pr.user)
	w.Header().Set("Location", "/api/partners/"+url.PathEscape(p.Name))
	writeJSON(w, http.StatusCreated, partnerView(p))
}

func (a *API) updatePartner(w http.ResponseWriter, r *http.Request, pr *principal) {
	var in partnerInput
	if !decodeJSON(w, r, &in) {
		return
	}
	p, ok := a.partner(w, r)
	if !ok {
		return
	}
	if in.Name != nil && *in.Name != p.Name {
		writeError(w, http.StatusBadRequest, "name: a partner cannot be renamed")
		return
	}
	if !fillPartner(w, &p, in) || !a.apply(w, "update partner", fsm.Command{Op: fsm.OpPartnerPut, Put: fsm.PutUpdate, Partner: &p}) {
		return
	}
	a.log.Info("partner changed", "partner", p.Name, "by", pr.user)
	writeJSON(w, http.StatusOK, partnerView(p))
}

func fillPartner(w http.ResponseWriter, p *fsm.Partner, in partnerInput) bool {
	set(&p.Name, in.Name)
	set(&p.Protocol, in.Protocol)
	set(&p.Address, in.Address)
	set(&p.HostKey, in.HostKey)
	set(&p.TLS, in.TLS)
	set(&p.TLSCert, in.TLSCert)
	err := validName("name", p.Name)
	if err == nil {
		err = validProtocol("protocol", p.Protocol)
	}
	if err == nil {
		host, port, serr := net.SplitHostPort(p.Address)
		if n, perr := strconv.Atoi(port); serr != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			err = fmt.Errorf("address: %q is not host:port", p.Address)
		}
	}
	switch {
	case err != nil:
	case p.Protocol == fsm.ProtoSFTP && p.HostKey == "":
		err = fmt.Errorf("hostKey: required for an sftp partner: its SSH host key in authorized_keys form (ssh-keyscan prints it), so that the gateway never sends files to whoever answers at its address")
	case p.HostKey != "" && p.Protocol != fsm.ProtoSFTP:
		err = fmt.Errorf("hostKey: only sftp partners have one")
	case p.TLS && p.Protocol != fsm.ProtoFTP:
		err = fmt.Errorf("tls: explicit TLS is for ftp partners; sftp is encrypted already")
	case p.TLSCert != "" && !p.TLS:
		err = fmt.Errorf("tlsCert: only for a partner with tls")
	case p.TLSCert != "":
		if _, cerr := transfer.PartnerCerts(p.TLSCert); cerr != nil {
			err = fmt.Errorf("tlsCert: %v", cerr)
		}
	case p.HostKey != "":
		if _, _, _, _, kerr := ssh.ParseAuthorizedKey([]byte(p.HostKey)); kerr != nil {
			err = fmt.Errorf("hostKey: not an SSH public key in authorized_keys form: %v", kerr)
		}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

func (a *API) deletePartner(w http.ResponseWriter, r *http.Request, pr *principal) {
	name := r.PathValue("partner")
	if !a.apply(w, "delete partner", fsm.Command{Op: fsm.OpPartnerDelete, Name: name}) {
		return
	}
	a.log.Info("partner deleted", "partner", name, "by", pr.user)
	w.WriteHeader(http.StatusNoContent)
}

type remoteAccountInput struct {
	Login      *string `json:"login"`
	Password   *string `json:"password"`
	PrivateKey *string `json:"privateKey"`
}

func remoteAccountView(a fsm.RemoteAccount) wire.RemoteAccount {
	return wire.RemoteAccount{Login: a.Login, Partner: a.Partner, HasPassword: a.Password != "", HasPrivateKey: a.PrivateKey != ""}
}

func (a *API) listRemoteAccounts(w http.ResponseWriter, r *http.Request, _ *principal) {
	p, ok := a.partner(w, r)
	if !ok {
		return
	}
	mine := func(acc fsm.RemoteAccount) bool { return acc.Partner == p.Name }
	listOf(w, r, "accounts", filtered(a.node, ofRemoteAccounts, mine), nil, remoteAccountView)
}

func (a *API) remoteAccount(w http.ResponseWriter, r *http.Request) (fsm.RemoteAccount, bool) {
	partner, login := r.PathValue("partner"), r.PathValue("login")
	acc, ok := lookup(a.node, ofRemoteAccounts, fsm.AccountKey(partner, login))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no account %q at partner %q", login, partner))
	}
	return acc, ok
}

func (a *API) getRemoteAccount(w http.ResponseWriter, r *http.Request, _ *principal) {
	if acc, ok := a.remoteAccount(w, r); ok {
		writeJSON(w, http.StatusOK, remoteAccountView(acc))
	}
}

func (a *API) createRemoteAccount(w http.ResponseWriter, r *http.Request, pr *principal) {
	var in remoteAccountInput
	if !decodeJSON(w, r, &in) {
		return
	}
	p, ok := a.partner(w, r)
	if !ok {
		return
	}
	if in.Login == nil || (in.Password == nil && in.PrivateKey == nil) {
		writeError(w, http.StatusBadRequest, `a new remote account needs "login" and a "password" or "privateKey"`)
		return
	}
	acc := fsm.RemoteAccount{Partner: p.Name, Login: *in.Login}
	if !a.fillRemoteAccount(w, &acc, in) || !a.apply(w, "create remote account", fsm.Command{Op: fsm.OpRemoteAccountPut, Put: fsm.PutCreate, RemoteAccount: &acc}) {
		return
	}
	a.log.Info("remote account created", "partner", p.Name, "login", acc.Login, "by", pr.user)
	w.Header().Set("Location", "/api/partners/"+url.PathEscape(p.Name)+"/accounts/"+url.PathEscape(acc.Login))
	writeJSON(w, http.StatusCreated, remoteAccountView(acc))
}

func (a *API) updateRemoteAccount(w http.ResponseWriter, r *http.Request, pr *principal) {
	var in remoteAccountInput
	if !decodeJSON(w, r, &in) {
		return
	}
	acc, ok := a.remoteAccount(w, r)
	if !ok {
		return
	}
	if in.Login != nil && *in.Login != acc.Login {
		writeError(w, http.StatusBadRequest, "login: an account cannot be renamed")
		return
	}
	if !a.fillRemoteAccount(w, &acc, in) || !a.apply(w, "update remote account", fsm.Command{Op: fsm.OpRemoteAccountPut, Put: fsm.PutUpdate, RemoteAccount: &acc}) {
		return
	}
	a.log.Info("remote account changed", "partner", acc.Partner, "login", acc.Login, "by", pr.user)
	writeJSON(w, http.StatusOK, remoteAccountView(acc))
}

// fillRemoteAccount seals the password and private key given.
func (a *API) fillRemoteAccount(w http.ResponseWriter, acc *fsm.RemoteAccount, in remoteAccountInput) bool {
	if err := validName("login", acc.Login); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	if in.PrivateKey != nil && *in.PrivateKey != "" {
		if _, err := ssh.ParsePrivateKey([]byte(*in.PrivateKey)); err != nil {
			writeError(w, http.StatusBadRequest, "privateKey: not an unencrypted SSH private key (PEM or OpenSSH form): "+err.Error())
			return false
		}
	}
	for _, f := range []struct {
		name string
		in   *string
		dst  *string
	}{{"password", in.Password, &acc.Password}, {"privateKey", in.PrivateKey, &acc.PrivateKey}} {
		if f.in == nil {
			continue
		}
		sealed, ok := a.seal(w, f.name, *f.in)
		if !ok {
			return false
		}
		*f.dst = sealed
	}
	if acc.Password == "" && acc.PrivateKey == "" {
		writeError(w, http.StatusBadRequest, "password, privateKey: a remote account needs at least one way to log in")
		return false
	}
	return true
}

func (a *API) deleteRemoteAccount(w http.ResponseWriter, r *http.Request, pr *principal) {
	partner, login := r.PathValue("partner"), r.PathValue("login")
	if !a.apply(w, "delete remote account", fsm.Command{Op: fsm.OpRemoteAccountDelete, Name: partner, Sub: login}) {
		return
	}
	a.log.Info("remote account deleted", "partner", partner, "login", login, "by", pr.user)
	w.WriteHeader(http.StatusNoContent)
}
