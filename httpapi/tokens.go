package httpapi

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
)

// maxTokensPerUser bounds the live tokens of one user; creating more revokes
// the ones expiring soonest, so the replicated state cannot grow without end.
const maxTokensPerUser = 32

// maxPrune bounds the expired tokens removed per token creation.
const maxPrune = 16

// createToken issues a bearer token to a caller who proves its password; a
// token cannot be used to make another, so a stolen token dies with its expiry.
func (a *API) createToken(w http.ResponseWriter, r *http.Request, p *principal) {
	if p.token != "" {
		unauthorized(w, r, "Basic", "a token is created with HTTP Basic credentials, not with another token")
		return
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		writeError(w, http.StatusInternalServerError, "generate token: "+err.Error())
		return
	}
	token := base64.RawURLEncoding.EncodeToString(secret)
	now := a.now()
	expires := now.Add(a.tokenTTL).UTC().Truncate(time.Second)
	if !a.apply(w, "create token", fsm.Command{Op: fsm.OpTokenPut, Token: &fsm.Token{Hash: tokenHash(token), User: p.user, Expires: expires}}) {
		return
	}
	a.log.Info("API token created", "user", p.user, "expires", expires, "remote", clientIP(r))
	a.pruneTokens(p.user, now)
	writeJSON(w, http.StatusCreated, wire.TokenResponse{Token: token, Expires: expires.Format(time.RFC3339)})
}

// pruneTokens removes expired tokens and a user's tokens beyond
// maxTokensPerUser, best effort: a failure only leaves them for next time.
func (a *API) pruneTokens(user string, now time.Time) {
	var drop, mine []fsm.Token
	for _, t := range copyOf(a.node, ofTokens) {
		switch {
		case !now.Before(t.Expires):
			drop = append(drop, t)
		case t.User == user:
			mine = append(mine, t)
		}
	}
	if len(drop) > maxPrune {
		drop = drop[:maxPrune]
	}
	if excess := len(mine) - maxTokensPerUser; excess > 0 {
		slices.SortFunc(mine, func(x, y fsm.Token) int { return x.Expires.Compare(y.Expires) })
		drop = append(drop, mine[:excess]...)
	}
	for _, t := range drop {
		if err := a.node.Apply(fsm.Command{Op: fsm.OpTokenDelete, At: now, Name: t.Hash}); err != nil {
			a.log.Warn("prune API token", "user", t.User, "err", err)
			return
		}
	}
}

// revokeToken deletes the bearer token the request presents (logout).
func (a *API) revokeToken(w http.ResponseWriter, r *http.Request, p *principal) {
	if p.token == "" {
		writeError(w, http.StatusBadRequest, "no bearer token presented: DELETE /api/tokens/current revokes the token in the Authorization header")
		return
	}
	if !a.apply(w, "revoke token", fsm.Command{Op: fsm.OpTokenDelete, Name: p.token}) {
		return
	}
	a.log.Info("API token revoked", "user", p.user, "remote", clientIP(r))
	w.WriteHeader(http.StatusNoContent)
}
