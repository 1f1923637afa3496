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

// keys are /api/keys/{key}; a key is replaced by deleting it and adding
// another, so there is no PUT or PATCH.
var keys = resource[fsm.PGPKey, keyInput, wire.PGPKey]{
	noun: "key", field: "keys", collection: "/api/keys", item: "/api/keys/{key}",
	pick: ofKeys, view: keyView, pathOf: func(k fsm.PGPKey) []string { return []string{k.Name} },
	create:     (*API).newKey,
	put:        func(m fsm.PutMode, k fsm.PGPKey) fsm.Command { return fsm.Command{Op: fsm.OpKeyPut, Put: m, Key: &k} },
	drop:       fsm.OpKeyDelete,
	mustExist:  true,
	createdLog: func(k fsm.PGPKey) []any { return []any{"private", k.Private, "fingerprint", k.Fingerprint} },
}

// keyInput is the body of POST /api/keys.
type keyInput struct {
	Name *string `json:"name"`
	Key  *string `json:"key"`
	// Passphrase opens a protected private key at its import; it is kept
	// nowhere (the key is stored sealed without that protection).
	Passphrase string `json:"passphrase"`
}

// newKey is an armored OpenPGP key (a partner's public key, or our
// private key) under a name, sealed. A private key protected by a
// passphrase comes with it: the import opens the key with it
// (tasks.Import).
func (a *API) newKey(w http.ResponseWriter, _ *http.Request, in keyInput) (fsm.PGPKey, bool) {
	if in.Name == nil || in.Key == nil {
		writeError(w, http.StatusBadRequest, `a key needs "name" and "key" (armored OpenPGP)`)
		return fsm.PGPKey{}, false
	}
	if err := validName("name", *in.Name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return fsm.PGPKey{}, false
	}
	imp, err := tasks.Import(*in.Key, in.Passphrase)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("key %s: %v", *in.Name, err))
		return fsm.PGPKey{}, false
	}
	k := fsm.PGPKey{Name: *in.Name, Private: imp.Private, Fingerprint: imp.Fingerprint}
	sealed, ok := a.seal(w, "key", imp.Armored)
	k.Armored = sealed
	return k, ok
}

// The tasks' named secrets (#SECRET:name# in WEBHOOK headers and EXEC
// args): sealed before they are replicated; the API shows their names,
// never their values.

func secretView(s fsm.Secret) wire.Secret { return wire.Secret{Name: s.Name} }

// secrets lists the task secrets as the other kinds are listed (names
// only); their writes are the handlers below: a new value is sealed, a
// secret in use is not deleted.
var secrets = resource[fsm.Secret, struct{}, wire.Secret]{
	noun: "secret", field: "secrets", collection: "/api/task-secrets", item: "/api/task-secrets/{secret}",
	pick: ofSecrets, view: secretView, pathOf: func(s fsm.Secret) []string { return []string{s.Name} },
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
