package httpapi

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/udmg/gateway/authguard"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
)

// userInput is the body of POST, PUT and PATCH /api/users…; pointers tell an
// absent field from an empty one.
type userInput struct {
	Username *string            `json:"username"`
	Password *string            `json:"password"`
	Perms    *map[string]string `json:"perms"`
}

var userNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// minPassword is the shortest password accepted; the longest is
// authguard.MaxPasswordBytes (bcrypt reads no further).
const minPassword = 8

func validateUserName(name string) error {
	if !userNamePattern.MatchString(name) {
		return fmt.Errorf("invalid username %q: 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	return nil
}

func validatePassword(pw string) error {
	return authguard.ValidatePassword("password", pw, minPassword)
}

// userView shows u with every domain, "---" where it holds nothing.
func userView(u fsm.User) wire.User {
	perms := make(map[string]string, len(Domains))
	for _, d := range Domains {
		perms[d] = "---"
		if m, ok := u.Perms[d]; ok && validMode(m) {
			perms[d] = m
		}
	}
	return wire.User{Username: u.Name, Perms: perms}
}

func validMode(m string) bool {
	return len(m) == 3 && (m[0] == 'r' || m[0] == '-') && (m[1] == 'w' || m[1] == '-') && (m[2] == 'd' || m[2] == '-')
}

// applyPerms returns current changed by spec, a map from domain to a mode
// ("rw-", "=r--") or a change in the style of chmod ("+w", "-wd"), as Waarp
// Gateway accepts. With replace, domains spec leaves out hold nothing.
func applyPerms(current map[string]string, spec map[string]string, replace bool) (map[string]string, error) {
	out := make(map[string]string, len(Domains))
	for _, d := range Domains {
		out[d] = "---"
		if !replace {
			if m, ok := current[d]; ok && validMode(m) {
				out[d] = m
			}
		}
	}
	for _, d := range slices.Sorted(maps.Keys(spec)) {
		if !slices.Contains(Domains, d) {
			return nil, fmt.Errorf("perms: unknown domain %q (domains: %s)", d, strings.Join(Domains, ", "))
		}
		m, err := changeMode(out[d], spec[d])
		if err != nil {
			return nil, fmt.Errorf("perms.%s: %w", d, err)
		}
		out[d] = m
	}
	return out, nil
}

var errMode = errors.New(`want a mode like "rw-" (r read, w write, d delete, - none) or a change like "+w" or "-wd"`)

func changeMode(cur, spec string) (string, error) {
	if validMode(spec) {
		return spec, nil
	}
	if spec == "" {
		return "", fmt.Errorf("empty: %w", errMode)
	}
	op, letters := spec[0], spec[1:]
	if op == '=' && validMode(letters) {
		return letters, nil
	}
	if op != '=' && op != '+' && op != '-' {
		return "", fmt.Errorf("%q: %w", spec, errMode)
	}
	set := []byte(cur)
	if op == '=' {
		set = []byte("---")
	}
	for _, c := range []byte(letters) {
		i := strings.IndexByte("rwd", c)
		if i < 0 {
			return "", fmt.Errorf("%q: %w", spec, errMode)
		}
		if op == '-' {
			set[i] = '-'
		} else {
			set[i] = c
		}
	}
	return string(set), nil
}

// users are /api/users/{username}: who may use this API, with what
// permissions. A change (changeUser) may rename, and neither it nor a
// delete may leave no one able to manage users (keepsUserAdmin).
var users = resource[fsm.User, userInput, wire.User]{
	noun: "user", field: "users", sortBy: "username", collection: "/api/users", item: "/api/users/{username}",
	pick: ofUsers, view: userView, pathOf: func(u fsm.User) []string { return []string{u.Name} },
	complete: func(in userInput) bool { return in.Username != nil && in.Password != nil },
	needs:    `a new user needs "username" and "password"`,
	create: func(_ *API, w http.ResponseWriter, _ *http.Request, in userInput) (fsm.User, bool) {
		if err := validateUserName(*in.Username); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return fsm.User{}, false
		}
		var spec map[string]string
		if in.Perms != nil {
			spec = *in.Perms
		}
		perms, err := applyPerms(nil, spec, true)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return fsm.User{}, false
		}
		hash, ok := hashPassword(w, *in.Password)
		return fsm.User{Name: *in.Username, Hash: hash, Perms: perms}, ok
	},
	change:     (*API).changeUser,
	put:        func(m fsm.PutMode, u fsm.User) fsm.Command { return fsm.Command{Op: fsm.OpUserPut, Put: m, User: &u} },
	drop:       fsm.OpUserDelete,
	vetDelete:  (*API).vetUserDelete,
	createdLog: func(u fsm.User) []any { return []any{"perms", permsText(u.Perms)} },
	self:       true,
}

func queryInt(q url.Values, name string, def, lo, hi int) (int, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s: %q is not a number from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

func hashPassword(w http.ResponseWriter, pw string) ([]byte, bool) {
	if err := validatePassword(pw); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	hash, err := authguard.Hash("password", pw)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return nil, false
	}
	return hash, true
}

// changeUser answers PUT (replace: the permissions become exactly those
// given, domains left out holding nothing) and PATCH (only the fields
// given change, and only the domains given within perms); the password
// changes only when given.
func (a *API) changeUser(w http.ResponseWriter, r *http.Request, p *principal, replace bool) {
	name := r.PathValue("username")
	var in userInput
	if !decodeJSON(w, r, &in) {
		return
	}
	newName := name
	if in.Username != nil && *in.Username != name {
		if err := validateUserName(*in.Username); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		newName = *in.Username
	}
	var hash []byte
	if in.Password != nil {
		var ok bool
		if hash, ok = hashPassword(w, *in.Password); !ok {
			return
		}
	}

	a.userMu.Lock()
	defer a.userMu.Unlock()
	users := copyOf(a.node, ofUsers)
	old, ok := users[name]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no user %q", name))
		return
	}
	u := fsm.User{Name: newName, Hash: old.Hash, Perms: old.Perms}
	if hash != nil {
		u.Hash = hash
	}
	if in.Perms != nil || replace {
		var spec map[string]string
		if in.Perms != nil {
			spec = *in.Perms
		}
		perms, err := applyPerms(old.Perms, spec, replace)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		u.Perms = perms
	}
	unchanged := maps.Equal(userView(u).Perms, userView(old).Perms)
	if !p.can(DomainUsers, permWrite) && (newName != name || !unchanged) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("permission denied: %s may change only its own password; names and permissions need %s write", p.user, DomainUsers))
		return
	}
	if newName != name {
		if _, exists := users[newName]; exists {
			writeError(w, http.StatusConflict, fmt.Sprintf("cannot rename %q: user %q already exists", name, newName))
			return
		}
	}
	delete(users, name)
	users[newName] = u
	if err := keepsUserAdmin(users); err != nil {
		writeError(w, http.StatusConflict, fmt.Sprintf("refused to change %q: %v", name, err))
		return
	}
	// A rename creates the new name (refused if taken meanwhile); a
	// change needs the user still there. A new password revokes the
	// user's tokens (in the machine).
	put := fsm.PutUpdate
	if newName != name {
		put = fsm.PutCreate
	}
	if !a.apply(w, "update user", fsm.Command{Op: fsm.OpUserPut, Put: put, User: &u}) {
		return
	}
	if newName != name {
		// The old name goes with its tokens; the rename is two commits, so
		// say clearly if the second one did not happen.
		if err := a.node.Apply(fsm.Command{Op: fsm.OpUserDelete, At: a.now(), Name: name}); err != nil {
			a.log.Error("rename user: the old name remains", "from", name, "to", newName, "err", err)
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("user %q created as %q but the old name could not be removed: %v; delete it again", name, newName, err))
			return
		}
		w.Header().Set("Location", "/api/users/"+url.PathEscape(newName))
	}
	a.log.Info("user changed", "user", name, "name", newName, "password_changed", hash != nil, "perms", permsText(userView(u).Perms), "by", p.user)
	writeJSON(w, http.StatusOK, userView(u))
}

// vetUserDelete refuses to delete the last user who can manage users; it
// holds userMu until the delete is answered.
func (a *API) vetUserDelete(w http.ResponseWriter, r *http.Request) (func(), bool) {
	name := r.PathValue("username")
	a.userMu.Lock()
	users := copyOf(a.node, ofUsers)
	if _, ok := users[name]; !ok {
		a.userMu.Unlock()
		writeError(w, http.StatusNotFound, fmt.Sprintf("no user %q", name))
		return nil, false
	}
	delete(users, name)
	if err := keepsUserAdmin(users); err != nil {
		a.userMu.Unlock()
		writeError(w, http.StatusConflict, fmt.Sprintf("refused to delete %q: %v", name, err))
		return nil, false
	}
	return a.userMu.Unlock, true
}

// keepsUserAdmin checks that someone in users could still manage users, so
// that the gateway can never lock its administrators out.
func keepsUserAdmin(users map[string]fsm.User) error {
	for _, u := range users {
		if hasPerm(u.Perms[DomainUsers], permWrite) {
			return nil
		}
	}
	return fmt.Errorf("no other user would keep %s write permission", DomainUsers)
}

func permsText(perms map[string]string) string {
	var b strings.Builder
	for _, d := range Domains {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(d + "=" + perms[d])
	}
	return b.String()
}
