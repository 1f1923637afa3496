package httpapi

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/udmg/gateway/confine"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/mirror"
	"github.com/udmg/gateway/transfer"
)

// MFT is what the MFT endpoints need besides the node.
type MFT struct {
	// Secrets seals remote passwords, private keys and FTPS keys before
	// they are replicated; nil refuses them.
	Secrets *transfer.Secrets
	// Protected refuses rule directories, transfer files and account
	// homes that reach DataDir or a key file (nil: none, in tests);
	// GatewayHome is what their relative paths are relative to.
	Protected   *confine.Guard
	GatewayHome string
	// IDs hands out transfer IDs (shared with the node's engine).
	IDs *transfer.IDs
	// History is the history table (mirror.Store); nil answers 503.
	History HistoryTable
}

// HistoryTable reads finished transfers (mirror.Store has it).
type HistoryTable interface {
	History(ctx context.Context, q mirror.HistoryQuery) ([]mirror.HistoryEntry, error)
}

// routesMFT registers the servers, accounts, partners, rules, transfers
// and history endpoints, shaped after Waarp Gateway's REST API.
func (a *API) routesMFT() {
	if a.mft.IDs == nil {
		a.mft.IDs = &transfer.IDs{}
	}
	read := func(d string) rule { return rule{domain: d, need: permRead} }
	write := func(d string) rule { return rule{domain: d, need: permWrite} }
	del := func(d string) rule { return rule{domain: d, need: permDelete} }

	a.handle("GET", "/api/servers", read(DomainServers), a.listServers)
	a.handle("POST", "/api/servers", write(DomainServers), a.createServer)
	a.handle("GET", "/api/servers/{server}", read(DomainServers), a.getServer)
	a.handle("PUT", "/api/servers/{server}", write(DomainServers), a.updateServer)
	a.handle("PATCH", "/api/servers/{server}", write(DomainServers), a.updateServer)
	a.handle("DELETE", "/api/servers/{server}", del(DomainServers), a.deleteServer)
	for _, action := range []string{"enable", "disable", "start", "stop"} {
		a.handle("PUT", "/api/servers/{server}/"+action, write(DomainServers), a.serverSwitch(action == "enable" || action == "start"))
	}
	a.handle("GET", "/api/servers/{server}/accounts", read(DomainServers), a.listAccounts)
	a.handle("POST", "/api/servers/{server}/accounts", write(DomainServers), a.createAccount)
	a.handle("GET", "/api/servers/{server}/accounts/{login}", read(DomainServers), a.getAccount)
	a.handle("PUT", "/api/servers/{server}/accounts/{login}", write(DomainServers), a.updateAccount)
	a.handle("PATCH", "/api/servers/{server}/accounts/{login}", write(DomainServers), a.updateAccount)
	a.handle("DELETE", "/api/servers/{server}/accounts/{login}", del(DomainServers), a.deleteAccount)

	a.handle("GET", "/api/partners", read(DomainPartners), a.listPartners)
	a.handle("POST", "/api/partners", write(DomainPartners), a.createPartner)
	a.handle("GET", "/api/partners/{partner}", read(DomainPartners), a.getPartner)
	a.handle("PUT", "/api/partners/{partner}", write(DomainPartners), a.updatePartner)
	a.handle("PATCH", "/api/partners/{partner}", write(DomainPartners), a.updatePartner)
	a.handle("DELETE", "/api/partners/{partner}", del(DomainPartners), a.deletePartner)
	a.handle("GET", "/api/partners/{partner}/accounts", read(DomainPartners), a.listRemoteAccounts)
	a.handle("POST", "/api/partners/{partner}/accounts", write(DomainPartners), a.createRemoteAccount)
	a.handle("GET", "/api/partners/{partner}/accounts/{login}", read(DomainPartners), a.getRemoteAccount)
	a.handle("PUT", "/api/partners/{partner}/accounts/{login}", write(DomainPartners), a.updateRemoteAccount)
	a.handle("PATCH", "/api/partners/{partner}/accounts/{login}", write(DomainPartners), a.updateRemoteAccount)
	a.handle("DELETE", "/api/partners/{partner}/accounts/{login}", del(DomainPartners), a.deleteRemoteAccount)

	a.handle("GET", "/api/rules", read(DomainRules), a.listRules)
	a.handle("POST", "/api/rules", write(DomainRules), a.createRule)
	a.handle("GET", "/api/rules/{rule}/{direction}", read(DomainRules), a.getRule)
	a.handle("PUT", "/api/rules/{rule}/{direction}", write(DomainRules), a.updateRule)
	a.handle("PATCH", "/api/rules/{rule}/{direction}", write(DomainRules), a.updateRule)
	a.handle("DELETE", "/api/rules/{rule}/{direction}", del(DomainRules), a.deleteRule)

	a.handle("GET", "/api/keys", read(DomainPartners), a.listKeys)
	a.handle("POST", "/api/keys", write(DomainPartners), a.createKey)
	a.handle("GET", "/api/keys/{key}", read(DomainPartners), a.getKey)
	a.handle("DELETE", "/api/keys/{key}", del(DomainPartners), a.deleteKey)

	a.handle("GET", "/api/task-secrets", read(DomainPartners), a.listSecrets)
	a.handle("POST", "/api/task-secrets", write(DomainPartners), a.createSecret)
	a.handle("PUT", "/api/task-secrets/{secret}", write(DomainPartners), a.createSecret)
	a.handle("DELETE", "/api/task-secrets/{secret}", del(DomainPartners), a.deleteSecret)

	a.handle("GET", "/api/transfers", read(DomainTransfers), a.listTransfers)
	a.handle("POST", "/api/transfers", write(DomainTransfers), a.createTransfer)
	a.handle("GET", "/api/transfers/{id}", read(DomainTransfers), a.getTransfer)
	for _, action := range []string{"pause", "resume", "cancel", "retry"} {
		a.handle("PUT", "/api/transfers/{id}/"+action, write(DomainTransfers), a.transferAction(action))
	}
	a.handle("GET", "/api/history", read(DomainTransfers), a.listHistory)
	a.routesSchedules() // schedules.go
}

var objectNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// validName checks an object's name or login, naming the field.
func validName(field, name string) error {
	if !objectNamePattern.MatchString(name) {
		return fmt.Errorf("invalid %s %q: 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", field, name)
	}
	return nil
}

func validProtocol(field, p string) error {
	if p != fsm.ProtoSFTP && p != fsm.ProtoFTP {
		return fmt.Errorf("%s: %q is not sftp or ftp", field, p)
	}
	return nil
}

// allowedPath answers 400 for a path relative to GatewayHome that reaches
// a protected path (DataDir, a key file); tree also refuses one that
// contains such a path (an account's home, roamed as a whole). what names
// the object ("rule x: localDir").
func (a *API) allowedPath(w http.ResponseWriter, what, rel string, tree bool) bool {
	if a.mft.Protected == nil {
		return true
	}
	abs := filepath.Join(a.mft.GatewayHome, filepath.FromSlash(rel))
	check := a.mft.Protected.File
	if tree {
		check = a.mft.Protected.Tree
	}
	if err := check(abs); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s %q: %v", what, rel, err))
		return false
	}
	return true
}

// validLocalDir checks a directory relative to GatewayHome.
func validLocalDir(field, dir string) error {
	if dir != "" && !filepath.IsLocal(dir) {
		return fmt.Errorf("%s: %q must be a relative path inside GatewayHome, without '..'", field, dir)
	}
	return nil
}

// pageParams reads the limit and offset query parameters.
func pageParams(w http.ResponseWriter, r *http.Request) (limit, offset int, ok bool) {
	q := r.URL.Query()
	limit, err := queryInt(q, "limit", 20, 1, 1000)
	if err == nil {
		offset, err = queryInt(q, "offset", 0, 0, 1<<31-1)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return 0, 0, false
	}
	return limit, offset, true
}

// page slices a sorted list by the limit and offset query parameters.
func page[T any](w http.ResponseWriter, r *http.Request, items []T) ([]T, bool) {
	limit, offset, ok := pageParams(w, r)
	if !ok {
		return nil, false
	}
	out := items[min(offset, len(items)):min(offset+limit, len(items))]
	if out == nil {
		out = []T{}
	}
	return out, true
}

// sortedNames lists m's keys in order, reversed for sort=name-.
func sortedNames[V any](w http.ResponseWriter, r *http.Request, m map[string]V) ([]string, bool) {
	names := slices.Sorted(maps.Keys(m))
	switch s := r.URL.Query().Get("sort"); s {
	case "", "name+":
	case "name-":
		slices.Reverse(names)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("sort: %q is not name+ or name-", s))
		return nil, false
	}
	return names, true
}

// listOf answers a list of views of m's objects selected by keep.
func listOf[V, O any](w http.ResponseWriter, r *http.Request, field string, m map[string]V, keep func(V) bool, view func(V) O) {
	names, ok := sortedNames(w, r, m)
	if !ok {
		return
	}
	var out []O
	for _, n := range names {
		if keep == nil || keep(m[n]) {
			out = append(out, view(m[n]))
		}
	}
	if out, ok := page(w, r, out); ok {
		writeJSON(w, http.StatusOK, map[string]any{field: out})
	}
}

func (a *API) seal(w http.ResponseWriter, field, plain string) (string, bool) {
	if plain == "" {
		return "", true
	}
	if a.mft.Secrets == nil {
		writeError(w, http.StatusServiceUnavailable, field+": no AES passphrase configured to protect it")
		return "", false
	}
	s, err := a.mft.Secrets.Seal([]byte(plain))
	if err != nil {
		writeError(w, http.StatusInternalServerError, field+": "+err.Error())
		return "", false
	}
	return s, true
}

// cleanRemotePath is a partner-side or in-home path, "/"-rooted.
func cleanRemotePath(field, p string) (string, error) {
	if p == "" || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%s: must not be empty", field)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("%s: %q must not contain '..'", field, p)
		}
	}
	return path.Clean("/" + p), nil
}
