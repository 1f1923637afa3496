package httpapi

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/tasks"
)

// The OpenPGP keys the rules' tasks name (ENCRYPT, DECRYPT, SIGN,
// VERIFY): sealed before they are replicated, never shown again.

func keyView(k fsm.PGPKey) wire.PGPKey {
	return wire.PGPKey{Name: k.Name, Private: k.Private, Fingerprint: k.Fingerprint}
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request, _ *principal) {
	listOf(w, r, "keys", copyOf(a.node, ofKeys), nil, keyView)
}

func (a *API) pgpKey(w http.ResponseWriter, r *http.Request) (fsm.PGPKey, bool) {
	name := r.PathValue("key")
	k, ok := lookup(a.node, ofKeys, name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no key %q", name))
	}
	return k, ok
}

func (a *API) getKey(w http.ResponseWriter, r *http.Request, _ *principal) {
	if k, ok := a.pgpKey(w, r); ok {
		writeJSON(w, http.StatusOK, keyView(k))
	}
}

// createKey stores an armored OpenPGP key (a partner's public key, or our
// private key) under a name, sealed. A private key protected by a
// passphrase comes with it ("passphrase"): the import opens the key with
// it (tasks.Import) and keeps the passphrase nowhere.
func (a *API) createKey(w http.ResponseWriter, r *http.Request, p *principal) {
	var in struct {
		Name       *string `json:"name"`
		Key        *string `json:"key"`
		Passphrase string  `json:"passphrase"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	if in.Name == nil || in.Key == nil {
		writeError(w, http.StatusBadRequest, `a key needs "name" and "key" (armored OpenPGP)`)
		return
	}
	if err := validName("name", *in.Name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	imp, err := tasks.Import(*in.Key, in.Passphrase)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("key %s: %v", *in.Name, err))
		return
	}
	k := fsm.PGPKey{Name: *in.Name, Private: imp.Private, Fingerprint: imp.Fingerprint}
	sealed, ok := a.seal(w, "key", imp.Armored)
	if !ok {
		return
	}
	k.Armored = sealed
	if !a.apply(w, "create key", fsm.Command{Op: fsm.OpKeyPut, Put: fsm.PutCreate, Key: &k}) {
		return
	}
	a.log.Info("OpenPGP key stored", "key", k.Name, "private", k.Private, "fingerprint", k.Fingerprint,
		"passphrase", in.Passphrase != "", "by", p.user)
	w.Header().Set("Location", "/api/keys/"+url.PathEscape(k.Name))
	writeJSON(w, http.StatusCreated, keyView(k))
}

func (a *API) deleteKey(w http.ResponseWriter, r *http.Request, p *principal) {
	k, ok := a.pgpKey(w, r)
	if !ok || !a.apply(w, "delete key", fsm.Command{Op: fsm.OpKeyDelete, Name: k.Name}) {
		return
	}
	a.log.Info("OpenPGP key deleted", "key", k.Name, "by", p.user)
	w.WriteHeader(http.StatusNoContent)
}
