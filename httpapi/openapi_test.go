package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/udmg/gateway/httpapi"
)

// description is httpapi's embedded OpenAPI description, parsed and
// validated once per test binary, with its router.
var description = sync.OnceValues(func() (*described, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(httpapi.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("load httpapi/openapi.json: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("httpapi/openapi.json is not a valid OpenAPI document: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route httpapi/openapi.json: %w", err)
	}
	return &described{doc: doc, router: router}, nil
})

type described struct {
	doc    *openapi3.T
	router routers.Router
}

func mustDescription(t testing.TB) *described {
	t.Helper()
	d, err := description()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checked counts, per operation, the exchanges the description was checked
// against (all) and those answered with success (ok), over the whole test
// binary.
var checked = struct {
	sync.Mutex
	all, ok map[string]int
}{all: map[string]int{}, ok: map[string]int{}}

// checkAPI wraps an API handler so that every request and its answer are
// checked against the description, failing t on a mismatch:
//   - an answered operation must be in the description, with that status,
//     headers and body (unknown fields included: additionalProperties is
//     false throughout, so a new field of httpapi/wire fails here);
//   - a request the description does not allow (a missing field, a wrong
//     type, no credentials) must be refused by the server with an error it
//     describes, never answered with success: the description may not be
//     stricter than the server, nor looser.
//
// A request outside the description (unknown path or method) must be
// refused with a JSON error.
func checkAPI(t *testing.T, h http.Handler) http.Handler {
	d := mustDescription(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("openapi check: read %s %s: %v", r.Method, r.URL, err)
		}
		in := r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		w.Header().Set(checkedHeader, "server")
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		in.Body = io.NopCloser(bytes.NewReader(body))
		if err := d.check(in, rec.status, w.Header(), rec.body.Bytes()); err != nil {
			t.Errorf("openapi: %s %s answered %d: %v", r.Method, r.URL.RequestURI(), rec.status, err)
		}
	})
}

// checkedHeader marks answers checkAPI checked already, so that
// checkingTransport does not check them twice.
const checkedHeader = "X-Test-Openapi-Checked"

// clientMismatches are the mismatches checkingTransport found; TestMain
// fails the run on any.
var clientMismatches struct {
	sync.Mutex
	list []string
}

// checkingTransport checks, from the client side, the exchanges with APIs
// checkAPI does not wrap: those of udmg-server processes (ts.NewCluster),
// forwarded writes included. It is the test binary's http.DefaultTransport,
// which testsupport's API clients use.
type checkingTransport struct{ next http.RoundTripper }

func (c checkingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	out := req
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		out = req.Clone(req.Context())
		out.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := c.next.RoundTrip(out)
	if err != nil || resp.Header.Get(checkedHeader) != "" {
		return resp, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(data))
	if err != nil {
		return resp, nil // the caller sees the short body; nothing to check
	}
	d, derr := description()
	if derr != nil {
		return resp, nil // TestMain reports it
	}
	in := req.Clone(req.Context())
	in.Body = io.NopCloser(bytes.NewReader(body))
	if err := d.check(in, resp.StatusCode, resp.Header, data); err != nil {
		clientMismatches.Lock()
		clientMismatches.list = append(clientMismatches.list, fmt.Sprintf("%s %s answered %d: %v", req.Method, req.URL.RequestURI(), resp.StatusCode, err))
		clientMismatches.Unlock()
	}
	return resp, nil
}

// recorder passes an answer on while keeping its status and body.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// check compares one exchange with the description.
func (d *described) check(req *http.Request, status int, header http.Header, body []byte) error {
	ctx := context.Background()
	if req.Method == http.MethodHead { // served by every GET route, answered without a body
		get := req.Clone(req.Context())
		get.Method = http.MethodGet
		if _, _, err := d.router.FindRoute(get); err == nil || status >= 400 {
			return nil
		}
	}
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		if status < 400 {
			return fmt.Errorf("success for an operation the description lacks (%v)", err)
		}
		return d.isError(header, body)
	}
	op := route.Operation.OperationID
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: presented, SkipSettingDefaults: true}}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if reqErr != nil && status < 400 {
		return fmt.Errorf("%s: the server accepted a request the description refuses: %v", op, reqErr)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%s: answer does not match the description: %v", op, err)
	}
	checked.Lock()
	checked.all[op]++
	if status < 400 {
		checked.ok[op]++
	}
	checked.Unlock()
	return nil
}

// isError checks an answer outside the description: a JSON error.
func (d *described) isError(header http.Header, body []byte) error {
	if ct := header.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("error answer outside the description is %q, not application/json", ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("error answer outside the description: %v", err)
	}
	return d.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020())
}

// presented checks that the request carries credentials of the scheme the
// description names; whether they are good is the server's business (a
// refused login is a described 401).
func presented(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme, _, _ := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, in.SecurityScheme.Scheme) {
		return fmt.Errorf("no %s credentials", in.SecurityScheme.Scheme)
	}
	return nil
}

// describedPath is the description's path for a registered pattern.
func describedPath(pattern string) string {
	switch pattern {
	case "/{$}":
		return "/"
	case "/ui/":
		return "/ui/{asset}"
	}
	return pattern
}

// TestOpenAPIRoutes walks the API's registration table: every route is in
// the description with the same method and authentication, and the
// description has no operation the API does not register.
func TestOpenAPIRoutes(t *testing.T) {
	d := mustDescription(t)
	if !d.doc.IsOpenAPI31OrLater() {
		t.Fatalf("description is OpenAPI %s, want 3.1", d.doc.OpenAPI)
	}
	registered := map[string]bool{} // "GET /path" -> public
	for _, r := range httpapi.New(httpapi.Options{}).Routes() {
		registered[r.Method+" "+describedPath(r.Pattern)] = r.Public
	}
	described := map[string]bool{}
	for path, item := range d.doc.Paths.Map() {
		for method, op := range item.Operations() {
			described[method+" "+path] = op.Security != nil && len(*op.Security) == 0
		}
	}
	for _, k := range slices.Sorted(maps.Keys(registered)) {
		public, ok := described[k]
		switch {
		case !ok:
			t.Errorf("route %s is registered but not in httpapi/openapi.json", k)
		case public != registered[k]:
			t.Errorf("route %s: registered public=%v, described public=%v", k, registered[k], public)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(described)) {
		if _, ok := registered[k]; !ok {
			t.Errorf("httpapi/openapi.json describes %s, which the API does not register", k)
		}
	}
	t.Logf("%d routes registered, %d operations described", len(registered), len(described))
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestOpenAPICheckCatchesDrift feeds the check exchanges that stray from
// the description in each way it must notice, and one that does not.
func TestOpenAPICheckCatchesDrift(t *testing.T) {
	d := mustDescription(t)
	perms := `{"administration":"rw-","servers":"rw-","partners":"rw-","rules":"rw-","users":"rw-","transfers":"rw-"}`
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	withLocation := http.Header{"Content-Type": {"application/json"}, "Location": {"/api/servers/x"}}
	server := `{"name":"x","protocol":"sftp","port":22,"root":"","tls":false,"tlsRequired":false,"enabled":true}`
	cases := []struct {
		name, method, path, body string
		status                   int
		header                   http.Header
		answer                   string
		want                     string // "" when the exchange matches
	}{
		{"matching", "GET", "/api/users/admin", "", 200, jsonHeader, `{"username":"admin","perms":` + perms + `}`, ""},
		{"answer with a field the description lacks", "GET", "/api/users/admin", "", 200, jsonHeader, `{"username":"admin","perms":` + perms + `,"email":"a@b"}`, "answer does not match"},
		{"answer without a required field", "GET", "/api/users/admin", "", 200, jsonHeader, `{"username":"admin"}`, "answer does not match"},
		{"status the operation does not describe", "GET", "/api/users/admin", "", 201, jsonHeader, `{"username":"admin","perms":` + perms + `}`, "status is not supported"},
		{"request field the description lacks, accepted", "POST", "/api/servers", `{"name":"x","protocol":"sftp","port":22,"colour":"red"}`, 201, withLocation, server, "accepted a request the description refuses"},
		{"same request refused", "POST", "/api/servers", `{"name":"x","protocol":"sftp","port":22,"colour":"red"}`, 400, jsonHeader, `{"error":"request body: unknown field \"colour\""}`, ""},
		{"success without credentials", "GET", "/api/servers", "", 200, jsonHeader, `{"servers":[]}`, "accepted a request the description refuses"},
		{"success on an undescribed path", "GET", "/api/nothing", "", 200, jsonHeader, `{}`, "description lacks"},
		{"undescribed path refused without JSON", "GET", "/api/nothing", "", 404, http.Header{"Content-Type": {"text/plain"}}, "no", "not application/json"},
		{"error that is not the error shape", "GET", "/api/users/nobody", "", 404, jsonHeader, `{"message":"no"}`, "answer does not match"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, "http://127.0.0.1:1"+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if !strings.Contains(c.name, "without credentials") {
				req.SetBasicAuth("admin", "x")
			}
			err = d.check(req, c.status, c.header, []byte(c.answer))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("matching exchange refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
