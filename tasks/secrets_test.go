package tasks

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestSecretReferences: #SECRET:name# is refused outside WEBHOOK headers
// and EXEC args and when malformed; SecretRefs lists the names; a WEBHOOK
// sends the stored value to a real receiver, an EXEC passes it to its
// program, and neither's output nor error shows it; an unknown secret
// fails the task naming it.
func TestSecretReferences(t *testing.T) {
	const token = "Bearer s3cr3t-token-value"
	for _, tc := range []struct {
		task Task
		want string
	}{
		{Task{Type: "MOVE", Args: map[string]any{"path": "out/#SECRET:tok#"}}, `MOVE: argument "path": #SECRET:…# is allowed only in WEBHOOK headers and EXEC args`},
		{Task{Type: "WEBHOOK", Args: map[string]any{"url": "https://h.example/#SECRET:tok#"}}, `argument "url": #SECRET:…# is allowed only`},
		{Task{Type: "WEBHOOK", Args: map[string]any{"url": "https://h.example/", "headers": map[string]any{"X": "#SECRET:bad name#"}}}, "a secret reference is #SECRET:name#"},
	} {
		if err := Validate(tc.task); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%v) = %v, want %q", tc.task, err, tc.want)
		}
	}
	hookTask := Task{Type: "WEBHOOK", Args: map[string]any{"url": "", "attempts": 1,
		"headers": map[string]any{"Authorization": "#SECRET:hook-token#", "X-Both": "#SECRET:a# and #SECRET:hook-token#"}}}
	if got := SecretRefs(hookTask); !slices.Equal(got, []string{"a", "hook-token"}) {
		t.Errorf("SecretRefs = %q", got)
	}

	h := newHome(t)
	store := map[string]string{"hook-token": token, "a": "alpha-value"}
	h.env.Secret = func(name string) (string, error) {
		v, ok := store[name]
		if !ok {
			return "", fmt.Errorf("secret %q: %w", name, ErrUnknownSecret)
		}
		return v, nil
	}
	k := newHook(t, 200)
	hookTask.Args["url"] = k.srv.URL
	r := h.run("WEBHOOK", hookTask.Args, facts("in/a.txt"))
	if k.calls() != 1 || k.auth[0] != token {
		t.Fatalf("receiver got Authorization %q", k.auth)
	}
	if strings.Contains(r.Output, "s3cr3t") {
		t.Errorf("output shows the secret: %q", r.Output)
	}

	h.put("in/a.txt", "x")
	r = h.run("EXEC", map[string]any{"path": "sh", "args": []any{"-c", `echo "got $0"; echo "token $0" >&2`, "#SECRET:hook-token#"}}, facts("in/a.txt"))
	if !strings.Contains(r.Output, "got #SECRET:hook-token#") || strings.Contains(r.Output, "s3cr3t") {
		t.Errorf("EXEC output %q", r.Output)
	}
	err := h.fail("EXEC", map[string]any{"path": "sh", "args": []any{"-c", `echo "$0"; exit 3`, "#SECRET:a#"}}, facts("in/a.txt"), "")
	if strings.Contains(err.Error(), "alpha-value") {
		t.Errorf("EXEC error shows the secret: %v", err)
	}
	h.fail("WEBHOOK", map[string]any{"url": k.srv.URL, "headers": map[string]any{"A": "#SECRET:gone#"}}, facts("in/a.txt"),
		`WEBHOOK: argument "headers": secret "gone": no such secret`)
}
