package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"

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

// The tasks' named secrets (#SECRET:name# in WEBHOOK headers and EXEC
// args): sealed before they are replicated; the API shows their names,
// never their values.

func secretView(s fsm.Secret) wire.Secret { return wire.Secret{Name: s.Name} }

func (a *API) listSecrets(w http.ResponseWriter, r *http.Request, _ *principal) {
	listOf(w, r, "secrets", copyOf(a.node, ofSecrets), nil, secretView)
}

// createSecret (POST /api/task-secrets) stores a value under a new name, sealed;
// PUT /api/task-secrets/{secret} gives a stored one a new value (a token
// renewed), which the tasks use from their next run.
func (a *API) createSecret(w http.ResponseWriter, r *http.Request, p *principal) {
	var in struct {
		Name  *string `json:"name"`
		Value *string `json:"value"`
	}
	put, verb := fsm.PutCreate, http.StatusCreated
	if name := r.PathValue("secret"); name != "" {
		if _, ok := lookup(a.node, ofSecrets, name); !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no secret %q", name))
			return
		}
		in.Name, put, verb = &name, fsm.PutUpdate, http.StatusOK
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	if put == fsm.PutUpdate && *in.Name != r.PathValue("secret") {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("secret %s: the name is the path's; a secret is not renamed", r.PathValue("secret")))
		return
	}
	if in.Name == nil || in.Value == nil || *in.Value == "" {
		writeError(w, http.StatusBadRequest, `a secret needs "name" and a non-empty "value"`)
		return
	}
	if err := validName("name", *in.Name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sealed, ok := a.seal(w, "secret "+*in.Name, *in.Value)
	if !ok {
		return
	}
	s := fsm.Secret{Name: *in.Name, Value: sealed}
	if !a.apply(w, "store secret", fsm.Command{Op: fsm.OpSecretPut, Put: put, Secret: &s}) {
		return
	}
	a.log.Info("secret stored", "secret", s.Name, "new", put == fsm.PutCreate, "by", p.user)
	w.Header().Set("Location", "/api/task-secrets/"+url.PathEscape(s.Name))
	writeJSON(w, verb, secretView(s))
}

// deleteSecret refuses to delete a secret a rule's task refers to, naming
// the rule and the task.
func (a *API) deleteSecret(w http.ResponseWriter, r *http.Request, p *principal) {
	name := r.PathValue("secret")
	if _, ok := lookup(a.node, ofSecrets, name); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no secret %q", name))
		return
	}
	for _, ru := range copyOf(a.node, ofRules) {
		err := eachTask(ru, func(field string, i int, t tasks.Task) error {
			if slices.Contains(tasks.SecretRefs(t), name) {
				return fmt.Errorf("secret %s: in use by %s rule %s: %s task %d (%q)", name, ru.Direction(), ru.Name, field, i+1, t.Type)
			}
			return nil
		})
		if err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
	}
	if !a.apply(w, "delete secret", fsm.Command{Op: fsm.OpSecretDelete, Name: name}) {
		return
	}
	a.log.Info("secret deleted", "secret", name, "by", p.user)
	w.WriteHeader(http.StatusNoContent)
}
