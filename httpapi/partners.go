package httpapi

import (
	"fmt"
	"net"
	"net/http"
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

// partners are /api/partners/{partner}: the remote SFTP and FTP servers
// client-mode transfers go to.
var partners = resource[fsm.Partner, partnerInput, wire.Partner]{
	noun: "partner", field: "partners", collection: "/api/partners", item: "/api/partners/{partner}",
	pick: ofPartners, view: partnerView, pathOf: func(p fsm.Partner) []string { return []string{p.Name} },
	complete: func(in partnerInput) bool { return in.Name != nil && in.Protocol != nil && in.Address != nil },
	needs:    `a new partner needs "name", "protocol" and "address"`,
	create: func(_ *API, w http.ResponseWriter, _ *http.Request, in partnerInput) (fsm.Partner, bool) {
		var p fsm.Partner
		ok := fillPartner(w, &p, in)
		return p, ok
	},
	update: func(_ *API, w http.ResponseWriter, p *fsm.Partner, in partnerInput) bool {
		return fixed(w, "name: a partner cannot be renamed", same(in.Name, p.Name)) && fillPartner(w, p, in)
	},
	put: func(m fsm.PutMode, p fsm.Partner) fsm.Command {
		return fsm.Command{Op: fsm.OpPartnerPut, Put: m, Partner: &p}
	},
	drop:       fsm.OpPartnerDelete,
	createdLog: func(p fsm.Partner) []any { return []any{"protocol", p.Protocol, "address", p.Address} },
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

type remoteAccountInput struct {
	Login      *string `json:"login"`
	Password   *string `json:"password"`
	PrivateKey *string `json:"privateKey"`
}

func remoteAccountView(a fsm.RemoteAccount) wire.RemoteAccount {
	return wire.RemoteAccount{Login: a.Login, Partner: a.Partner, HasPassword: a.Password != "", HasPrivateKey: a.PrivateKey != ""}
}

// remoteAccounts are /api/partners/{partner}/accounts/{login}: the
// logins transfers use at a partner, their password and key sealed.
var remoteAccounts = resource[fsm.RemoteAccount, remoteAccountInput, wire.RemoteAccount]{
	noun: "remote account", field: "accounts", collection: "/api/partners/{partner}/accounts", item: "/api/partners/{partner}/accounts/{login}",
	pick: ofRemoteAccounts, view: remoteAccountView, pathOf: func(acc fsm.RemoteAccount) []string { return []string{acc.Partner, acc.Login} },
	missing: func(v []string) error { return fmt.Errorf("no account %q at partner %q", v[1], v[0]) },
	parent:  &partners,
	complete: func(in remoteAccountInput) bool {
		return in.Login != nil && (in.Password != nil || in.PrivateKey != nil)
	},
	needs: `a new remote account needs "login" and a "password" or "privateKey"`,
	create: func(a *API, w http.ResponseWriter, r *http.Request, in remoteAccountInput) (fsm.RemoteAccount, bool) {
		acc := fsm.RemoteAccount{Partner: r.PathValue("partner"), Login: *in.Login}
		ok := a.fillRemoteAccount(w, &acc, in)
		return acc, ok
	},
	update: func(a *API, w http.ResponseWriter, acc *fsm.RemoteAccount, in remoteAccountInput) bool {
		return fixed(w, "login: an account cannot be renamed", same(in.Login, acc.Login)) && a.fillRemoteAccount(w, acc, in)
	},
	put: func(m fsm.PutMode, acc fsm.RemoteAccount) fsm.Command {
		return fsm.Command{Op: fsm.OpRemoteAccountPut, Put: m, RemoteAccount: &acc}
	},
	drop: fsm.OpRemoteAccountDelete,
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
