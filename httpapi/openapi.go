package httpapi

import (
	"embed"
	"net/http"
)

// The API's OpenAPI 3.1 description and the page that renders it, built
// into the binary. openapi.json is kept by hand beside the handlers; the
// package's tests check it against the routes registered here and against
// every request and answer of the test suite, so that it cannot drift.
//
//go:embed openapi.json docs
var openAPIFiles embed.FS

// OpenAPI is the embedded description, served at GET /api/openapi.json.
func OpenAPI() []byte {
	b, err := openAPIFiles.ReadFile("openapi.json")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return b
}

// Route is one endpoint the API registers, as its tests walk them.
type Route struct {
	Method string
	// Pattern is the net/http pattern's path ("/api/servers/{server}",
	// "/ui/" for a prefix, "/{$}" for the root alone).
	Pattern string
	// Public routes answer without credentials.
	Public bool
}

// Routes lists every endpoint in registration order.
func (a *API) Routes() []Route { return append([]Route(nil), a.routes...) }

// public registers an endpoint that needs no credentials; another method on
// its path answers 405.
func (a *API) public(method, path string, h http.Handler) {
	a.routes = append(a.routes, Route{Method: method, Pattern: path, Public: true})
	a.mux.Handle(method+" "+path, h)
	a.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		methodNotAllowed(w, r, []string{method})
	})
}

// docsFile serves one embedded file of the description or its page.
func docsFile(name, contentType string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := openAPIFiles.ReadFile(name)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "embedded "+name+": "+err.Error())
			return
		}
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		w.WriteHeader(http.StatusOK)
		w.Write(b)
	})
}

// routesDocs registers the description and its reference page.
func (a *API) routesDocs() {
	a.public("GET", "/api/openapi.json", docsFile("openapi.json", "application/json"))
	a.public("GET", "/api/docs", docsFile("docs/index.html", "text/html; charset=utf-8"))
	a.public("GET", "/api/docs/docs.js", docsFile("docs/docs.js", "text/javascript; charset=utf-8"))
	a.public("GET", "/api/docs/docs.css", docsFile("docs/docs.css", "text/css; charset=utf-8"))
}
