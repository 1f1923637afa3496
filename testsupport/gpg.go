package testsupport

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// GPG is Debian's gpg on a throw-away home (a short path: gpg-agent's
// socket lives in it), the independent check of the gateway's OpenPGP
// work. The agent is stopped and the home removed when the test ends.
type GPG struct {
	t    testing.TB
	Home string
}

// NewGPG skips the test when gpg is not installed (make deps installs it).
func NewGPG(t testing.TB) *GPG {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not installed (make deps installs it)")
	}
	dir, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "all")
		kill.Env = append(os.Environ(), "GNUPGHOME="+dir)
		_ = kill.Run()
		os.RemoveAll(dir)
	})
	return &GPG{t: t, Home: dir}
}

// Run runs gpg in batch mode, without passphrases, and returns its stdout;
// a failure fails the test.
func (g *GPG) Run(stdin []byte, args ...string) []byte {
	g.t.Helper()
	cmd := exec.Command("gpg", append([]string{"--homedir", g.Home, "--batch", "--yes", "--no-tty",
		"--pinentry-mode", "loopback", "--passphrase", "", "--trust-model", "always"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out.Bytes()
}

// NewKey makes a key pair (ed25519 and cv25519) for uid and returns its
// armored public key.
func (g *GPG) NewKey(uid string) string {
	g.t.Helper()
	g.Run(nil, "--quick-gen-key", uid, "future-default", "default", "never")
	return string(g.Run(nil, "--armor", "--export", uid))
}
