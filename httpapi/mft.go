package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"regexp"
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

	routes(a, DomainServers, &servers)
	routes(a, DomainServers, &accounts)
	routes(a, DomainPartners, &partners)
	routes(a, DomainPartners, &remoteAccounts)
	routes(a, DomainRules, &rules)
	routes(a, DomainPartners, &keys)

	a.handle("GET", secrets.collection, read(DomainPartners), secrets.list(a))
	a.handle("POST", secrets.collection, write(DomainPartners), a.createSecret)
	a.handle("PUT", secrets.item, write(DomainPartners), a.createSecret)
	a.handle("DELETE", secrets.item, rule{domain: DomainPartners, need: permDelete}, a.deleteSecret)

	a.handle("GET", "/api/transfers", read(DomainTransfers), a.listTransfers)
	a.handle("POST", "/api/transfers", write(DomainTransfers), a.createTransfer)
	a.handle("GET", "/api/transfers/{id}", read(DomainTransfers), a.getTransfer)
	for _, action := range []string{"pause", "resume", "cancel", "retry"} {
		a.handle("PUT", "/api/transfers/{id}/"+action, write(DomainTransfers), a.transferAction(action))
	}
	a.handle("GET", "/api/history", read(DomainTransfers), a.listHistory)
	routes(a, DomainTransfers, &schedules)
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
