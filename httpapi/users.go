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

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, _ *principal) {
	q := r.URL.Query()
	limit, err := queryInt(q, "limit", 20, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	offset, err := queryInt(q, "offset", 0, 0, 1<<31-1)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	users := copyOf(a.node, ofUsers)
	names := slices.Sorted(maps.Keys(users))
	switch q.Get("sort") {
	case "", "username+":
	case "username-":
		slices.Reverse(names)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("sort: %q is not username+ or username-", q.Get("sort")))
		return
	}
	out := wire.UserList{Users: []wire.User{}}
	for _, name := range names[min(offset, len(names)):min(offset+limit, len(names))] {
		out.Users = append(out.Users, userView(users[name]))
	}
	writeJSON(w, http.StatusOK, out)
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

func (a *API) getUser(w http.ResponseWriter, r *http.Request, _ *principal) {
	name := r.PathValue("username")
	u, ok := lookup(a.node, ofUsers, name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no user %q", name))
		return
	}
	writeJSON(w, http.StatusOK, userView(u))
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request, _ *principal) {
	var in userInput
	if !decodeJSON(w, r, &in) {
		return
	}
	if in.Username == nil || in.Password == nil {
		writeError(w, http.StatusBadRequest, `a new user needs "username" and "password"`)
		return
	}
	if err := validateUserName(*in.Username); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var spec map[string]string
	if in.Perms != nil {
		spec = *in.Perms
	}
	perms, err := applyPerms(nil, spec, true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	hash, ok := hashPassword(w, *in.Password)
	if !ok {
		return
	}
	u := fsm.User{Name: *in.Username, Hash: hash, Perms: perms}
	if !a.apply(w, "create user", fsm.Command{Op: fsm.OpUserPut, Put: fsm.PutCreate, User: &u}) {
		return
	}
	a.log.Info("user created", "user", u.Name, "perms", permsText(perms))
	w.Header().Set("Location", "/api/users/"+url.PathEscape(u.Name))
	writeJSON(w, http.StatusCreated, userView(u))
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

// replaceUser (PUT) sets the user's permissions to exactly those given
// (domains left out hold nothing); the password changes only when given.
func (a *API) replaceUser(w http.ResponseWriter, r *http.Request, p *principal) {
	a.changeUser(w, r, p, true)
}

// updateUser (PATCH) changes only the fields given, and only the domains
// given within perms.
func (a *API) updateUser(w http.ResponseWriter, r *http.Request, p *principal) {
	a.changeUser(w, r, p, false)
}

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

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, p *principal) {
	name := r.PathValue("username")
	a.userMu.Lock()
	defer a.userMu.Unlock()
	users := copyOf(a.node, ofUsers)
	if _, ok := users[name]; !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no user %q", name))
		return
	}
	delete(users, name)
	if err := keepsUserAdmin(users); err != nil {
		writeError(w, http.StatusConflict, fmt.Sprintf("refused to delete %q: %v", name, err))
		return
	}
	if !a.apply(w, "delete user", fsm.Command{Op: fsm.OpUserDelete, Name: name}) {
		return
	}
	a.log.Info("user deleted", "user", name, "by", p.user)
	w.WriteHeader(http.StatusNoContent)
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
