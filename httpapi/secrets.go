package httpapi

import (
	"errors"
	"net/http"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
)

// rotateAttempts bounds how often a rotation is computed again because a
// write changed a sealed value meanwhile.
const rotateAttempts = 5

// rotateSecrets answers POST /api/secrets/rotate: a new data key, and every
// sealed value of the state resealed under it, committed as one entry (the
// old key stays in force until that entry applies).
func (a *API) rotateSecrets(w http.ResponseWriter, r *http.Request, p *principal) {
	if a.mft.Secrets == nil {
		writeError(w, http.StatusServiceUnavailable, "secrets rotate: this node has no secrets keeper")
		return
	}
	var err error
	for range rotateAttempts {
		st := a.node.State()
		var rot *fsm.SecretsArgs
		if rot, err = a.mft.Secrets.Rotation(st); err != nil {
			writeError(w, http.StatusConflict, "secrets rotate: "+err.Error())
			return
		}
		err = a.node.Apply(fsm.Command{Op: fsm.OpSecretsRotate, At: a.now(), Secrets: rot})
		if errors.Is(err, fsm.ErrSecretsChanged) {
			continue
		}
		if !a.committed(w, "secrets rotate", err) {
			return
		}
		gen := a.node.State().Secrets.Generation
		a.log.Info("secrets key rotated", "generation", gen, "resealed", len(rot.Values), "by", p.user)
		writeJSON(w, http.StatusOK, wire.SecretsRotation{Generation: gen, Resealed: len(rot.Values)})
		return
	}
	writeError(w, http.StatusConflict, "secrets rotate: sealed values kept changing; retry: "+err.Error())
}
