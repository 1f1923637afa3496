package main

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// TestClusterToken: `udmgctl cluster token` needs no server and prints a
// fresh 32-byte base64url token each time.
func TestClusterToken(t *testing.T) {
	seen := map[string]bool{}
	for range 3 {
		var out, errOut bytes.Buffer
		if code := run([]string{"cluster", "token"}, func(string) string { return "" }, &out, &errOut); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		tok := strings.TrimSpace(out.String())
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) != 32 {
			t.Fatalf("token %q: %d bytes, %v; want 32 bytes of base64url", tok, len(b), err)
		}
		if seen[tok] {
			t.Fatalf("token %q printed twice", tok)
		}
		seen[tok] = true
	}
}
