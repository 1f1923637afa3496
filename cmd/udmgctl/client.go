package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

var httpClient = &http.Client{Timeout: 30 * time.Second}

// response is a successful API answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// call sends one request and turns any non-2xx answer into an error that
// carries the API's own message.
func (c *cli) call(method, path string, body []byte) (*response, error) {
	base := strings.TrimRight(c.addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("--addr %q: %w", c.addr, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	switch {
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	case c.password == "":
		return nil, errors.New("no password: set --password or UDMGCTL_PASSWORD (or --token)")
	default:
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach %s: %v", base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		return nil, fmt.Errorf("%s %s: %s (%s)", method, path, msg, resp.Status)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// callJSON sends v (when not nil) as JSON and decodes the answer into out
// (when not nil).
func (c *cli) callJSON(method, path string, v, out any) (*response, error) {
	var body []byte
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	resp, err := c.call(method, path, body)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if err := json.Unmarshal(resp.body, out); err != nil {
			return nil, fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return resp, nil
}

// printJSON writes an API answer as it came (the API indents it).
func (c *cli) printJSON(body []byte) {
	c.stdout.Write(body)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		fmt.Fprintln(c.stdout)
	}
}

// encodeJSON writes v indented, for --json output made locally.
func (c *cli) encodeJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
