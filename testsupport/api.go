package testsupport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// APIClient calls a node's REST API with HTTP Basic credentials or a bearer
// token, for tests that drive the admin API.
type APIClient struct {
	Base     string // e.g. http://127.0.0.1:8080
	User     string
	Password string
	Token    string // used instead of User/Password when set
	HTTP     *http.Client
}

// Admin is a client of p's API as the initial administrator.
func (p *Proc) Admin() *APIClient {
	return &APIClient{Base: p.AdminURL(), User: "admin", Password: AdminPassword}
}

// As returns a copy of c using other credentials.
func (c *APIClient) As(user, password string) *APIClient {
	d := *c
	d.User, d.Password, d.Token = user, password, ""
	return &d
}

// WithToken returns a copy of c authenticating with a bearer token.
func (c *APIClient) WithToken(token string) *APIClient {
	d := *c
	d.Token = token
	return &d
}

// Tokened creates a bearer token for c's user (POST /api/tokens) and
// returns a copy of c that uses it: a storm that slows Basic logins of
// that user leaves it unslowed.
func (c *APIClient) Tokened(t testing.TB) *APIClient {
	t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	if err := c.Must(t, 201, "POST", "/api/tokens", nil).Decode(&tok); err != nil {
		t.Fatal(err)
	}
	return c.WithToken(tok.Token)
}

// Response is one API answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// ErrorMessage is the "error" field of a JSON error answer ("" when none).
func (r *Response) ErrorMessage() string {
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(r.Body, &e)
	return e.Error
}

// Decode unmarshals the body into v.
func (r *Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode %d answer %q: %w", r.Status, truncateBody(r.Body), err)
	}
	return nil
}

func (r *Response) String() string {
	return fmt.Sprintf("%d %s", r.Status, truncateBody(r.Body))
}

func truncateBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Do sends a request; body is marshalled as JSON unless it is a []byte or
// nil. Only transport failures are errors: any status is a Response.
func (c *APIClient) Do(method, path string, body any) (*Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case c.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.Token)
	case c.User != "":
		req.SetBasicAuth(c.User, c.Password)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute} // bcrypt under -race on a loaded machine is slow
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}
