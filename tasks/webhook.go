package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrWebhook marks a WEBHOOK whose receiver never accepted the POST.
var ErrWebhook = errors.New("webhook failed")

const (
	webhookAttempts = 5
	webhookTimeout  = 10 * time.Second
)

// webhookBackoff is the wait before the second attempt; it doubles up to
// webhookMaxBackoff.
var webhookBackoff, webhookMaxBackoff = 200 * time.Millisecond, 5 * time.Second

func init() {
	specs["WEBHOOK"] = kindSpec{
		args: []arg{
			{name: "url", kind: kString, required: true},
			{name: "headers", kind: kHeaders, secrets: true},
			{name: "attempts", kind: kNumber},
			{name: "timeout", kind: kDuration},
		},
		check: checkWebhook,
		run:   runWebhook,
	}
}

func checkWebhook(a args) error {
	if n := a.num("attempts", 1); n < 1 || n > 20 {
		return fmt.Errorf("argument \"attempts\": %d is not between 1 and 20", n)
	}
	if _, err := hookURL(a.str("url")); err != nil && !strings.Contains(a.str("url"), "#") {
		return fmt.Errorf("argument \"url\": %w", err)
	}
	return nil
}

func hookURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http or https URL", redact(u))
	}
	return u, nil
}

// redact keeps a URL's scheme, host and path for errors: its user
// information and query may carry a token.
func redact(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// WEBHOOK {"url", "headers", "attempts", "timeout"}: POST the transfer's
// facts as a JSON object (the names of Facts.fields; transferId and
// filesize are numbers). A connection error, a 429 or a 5xx is retried
// after a growing wait, attempts times in all (default webhookAttempts);
// a 2xx succeeds; anything else fails at once. Each attempt is bounded by
// timeout (default webhookTimeout). At-least-once: every attempt, and a
// rerun after a crash, carries the same Idempotency-Key.
func runWebhook(ctx context.Context, c *call) (Result, error) {
	u, err := hookURL(c.args.str("url"))
	if err != nil {
		return Result{}, fmt.Errorf("url: %w", err)
	}
	body := map[string]any{}
	for _, f := range c.facts.fields(c.env.Home) {
		body[f.json] = f.value
	}
	body["transferId"], body["filesize"], body["isServer"] = c.facts.TransferID, c.facts.Filesize, c.facts.IsServer
	payload, err := json.Marshal(body)
	if err != nil {
		return Result{}, err
	}
	tr := &http.Transport{DialContext: c.env.Dial, TLSHandshakeTimeout: webhookTimeout}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		Timeout:       c.args.duration("timeout", webhookTimeout),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	attempts := int(c.args.num("attempts", webhookAttempts))
	wait := webhookBackoff
	var last string
	for n := 1; ; n++ {
		status, retry, err := c.post(ctx, client, u, payload)
		if err == nil {
			return Result{Output: fmt.Sprintf("POST %s: %s (attempt %d)", redact(u), status, n)}, nil
		}
		last = err.Error()
		if !retry || n == attempts {
			return Result{}, fmt.Errorf("%w: POST %s: %d attempt(s), last: %s", ErrWebhook, redact(u), n, last)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, fmt.Errorf("POST %s: %w after %d attempt(s), last: %s", redact(u), ctx.Err(), n, last)
		case <-t.C:
		}
		wait = min(2*wait, webhookMaxBackoff)
	}
}

// post makes one attempt; retry says whether another may succeed.
func (c *call) post(ctx context.Context, client *http.Client, u *url.URL, payload []byte) (status string, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(payload))
	if err != nil {
		return "", false, err
	}
	headers, _ := c.args["headers"].(map[string]any)
	for k, v := range headers {
		req.Header.Set(k, v.(string))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", strconv.FormatUint(c.facts.TransferID, 10)+"/"+c.facts.TaskKey)
	resp, err := client.Do(req)
	if err != nil {
		// The client's error names the URL with its query: say less.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", ctx.Err() == nil, fmt.Errorf("no answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.Status, false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return resp.Status, true, fmt.Errorf("answered %s", resp.Status)
	}
	return resp.Status, false, fmt.Errorf("answered %s", resp.Status)
}
