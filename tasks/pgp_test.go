package tasks

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gpg is Debian's gpg on a throw-away GNUPGHOME: the independent check of
// what this package makes and reads.
type gpg struct {
	t    *testing.T
	home string
}

func newGPG(t *testing.T) *gpg {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Fatal("gpg is not installed (make deps)")
	}
	// A short path: gpg-agent's socket lives in it.
	dir, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	g := &gpg{t: t, home: dir}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "all")
		kill.Env = append(os.Environ(), "GNUPGHOME="+dir)
		_ = kill.Run()
		os.RemoveAll(dir)
	})
	return g
}

// run runs gpg and returns its stdout; a failure fails the test unless
// mayFail, in which case the error and stderr come back.
func (g *gpg) exec(stdin []byte, args ...string) ([]byte, string, error) {
	g.t.Helper()
	full := append([]string{"--homedir", g.home, "--batch", "--yes", "--no-tty",
		"--pinentry-mode", "loopback", "--passphrase", "", "--trust-model", "always"}, args...)
	cmd := exec.Command("gpg", full...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.Bytes(), errb.String(), err
}

func (g *gpg) run(stdin []byte, args ...string) []byte {
	g.t.Helper()
	out, stderr, err := g.exec(stdin, args...)
	if err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// newKey makes a key pair (ed25519 and cv25519, no passphrase) and returns
// its armored public and secret keys.
func (g *gpg) newKey(uid string) (pub, sec string) {
	g.t.Helper()
	g.run(nil, "--quick-gen-key", uid, "future-default", "default", "never")
	return string(g.run(nil, "--armor", "--export", uid)), string(g.run(nil, "--armor", "--export-secret-keys", uid))
}

// TestOpenPGPWithGPG checks ENCRYPT, DECRYPT, SIGN and VERIFY against gpg,
// both ways, and that a tampered file fails VERIFY.
func TestOpenPGPWithGPG(t *testing.T) {
	g := newGPG(t)
	h := newHome(t)
	h.keys["acme"], h.keys["acme-private"] = g.newKey("Acme <files@acme.example>")
	h.keys["other"], _ = g.newKey("Other <other@example.net>")
	payload := strings.Repeat("invoice line\n", 5000)
	h.put("in/invoice.txt", payload)
	f := facts("in/invoice.txt")

	t.Run("ENCRYPT opened by gpg", func(t *testing.T) {
		h := h.with(t)
		for _, armor := range []bool{false, true} {
			// A crash left a partial temporary output: the rerun overwrites it.
			h.put("in/.invoice.txt.pgp.42.tmp", "garbage")
			r := h.run("ENCRYPT", map[string]any{"key": "acme", "armor": armor}, f)
			if r.Path != "in/invoice.txt.pgp" {
				t.Fatalf("ENCRYPT path %q", r.Path)
			}
			enc := []byte(h.read(r.Path))
			if armor != bytes.HasPrefix(enc, []byte("-----BEGIN PGP MESSAGE-----")) {
				t.Errorf("armor %v, output starts %q", armor, enc[:20])
			}
			if got := g.run(enc, "--decrypt"); string(got) != payload {
				t.Fatalf("gpg decrypted %d bytes, want %d", len(got), len(payload))
			}
		}
		h.noTemps()
	})

	t.Run("gpg's message opened by DECRYPT", func(t *testing.T) {
		h := h.with(t)
		enc := g.run([]byte(payload), "--encrypt", "--recipient", "files@acme.example", "--sign", "--local-user", "files@acme.example")
		h.put("in/from-gpg.txt.gpg", string(enc))
		h.put("in/.from-gpg.txt.42.tmp", "partial plaintext of a crashed run")
		h.run("DECRYPT", map[string]any{"key": "acme-private"}, facts("in/from-gpg.txt.gpg"))
		r := h.run("DECRYPT", map[string]any{"key": "acme-private", "verifyKey": "acme"}, facts("in/from-gpg.txt.gpg"))
		if r.Path != "in/from-gpg.txt" || h.read(r.Path) != payload {
			t.Fatalf("DECRYPT = %+v", r)
		}
		// Signed by acme, but the rule wants other's signature.
		h.fail("DECRYPT", map[string]any{"key": "acme-private", "verifyKey": "other", "path": "in/x"},
			facts("in/from-gpg.txt.gpg"), "none of the given keys")
		if h.exists("in/x") {
			t.Error("a message refused by verifyKey was written")
		}
		// A public key cannot decrypt.
		h.fail("DECRYPT", map[string]any{"key": "acme"}, facts("in/from-gpg.txt.gpg"), `key "acme": a public key; the private key is needed`)
	})

	t.Run("gpg's signature accepted by VERIFY, tampered refused", func(t *testing.T) {
		h := h.with(t)
		sig := g.run([]byte(payload), "--detach-sign", "--local-user", "files@acme.example")
		h.put("in/invoice.txt.sig", string(sig))
		h.run("VERIFY", map[string]any{"key": "acme"}, f)
		asc := g.run([]byte(payload), "--armor", "--detach-sign", "--local-user", "files@acme.example")
		h.put("in/invoice.txt.asc", string(asc))
		h.run("VERIFY", map[string]any{"key": []any{"other", "acme"}, "signature": "#TRUEFULLPATH#.asc"}, f)

		h.fail("VERIFY", map[string]any{"key": "other"}, f, "does not verify")
		h.put("in/invoice.txt", payload+"x")
		err := h.fail("VERIFY", map[string]any{"key": "acme"}, f, "in/invoice.txt.sig does not verify in/invoice.txt")
		if !errors.Is(err, ErrBadSignature) {
			t.Errorf("%v is not ErrBadSignature", err)
		}
		h.put("in/invoice.txt", payload)
	})

	t.Run("SIGN verified by gpg", func(t *testing.T) {
		h := h.with(t)
		for range 2 {
			if r := h.run("SIGN", map[string]any{"key": "acme-private", "path": "in/ours.sig"}, f); r.Path != "" {
				t.Fatalf("a detached SIGN moved the chain: %+v", r)
			}
		}
		dir := filepath.Join(h.dir, "in")
		g.run(nil, "--verify", filepath.Join(dir, "ours.sig"), filepath.Join(dir, "invoice.txt"))

		r := h.run("SIGN", map[string]any{"key": "acme-private", "mode": "inline", "armor": true}, f)
		if r.Path != "in/invoice.txt.gpg" {
			t.Fatalf("inline SIGN path %q", r.Path)
		}
		if got := g.run([]byte(h.read(r.Path)), "--decrypt"); string(got) != payload {
			t.Error("gpg did not open the signed message")
		}
		// And VERIFY inline reads it back.
		v := h.run("VERIFY", map[string]any{"key": "acme", "mode": "inline", "path": "in/checked.txt"}, facts(r.Path))
		if v.Path != "in/checked.txt" || h.read(v.Path) != payload {
			t.Errorf("inline VERIFY = %+v", v)
		}
	})

	t.Run("VERIFY inline of gpg's signed message, and of a forged one", func(t *testing.T) {
		h := h.with(t)
		signed := g.run([]byte(payload), "--sign", "--local-user", "other@example.net")
		h.put("in/signed.gpg", string(signed))
		h.fail("VERIFY", map[string]any{"key": "acme", "mode": "inline"}, facts("in/signed.gpg"), "none of the given keys")
		if h.exists("in/signed") {
			t.Error("a refused message was written")
		}
		h.run("VERIFY", map[string]any{"key": "other", "mode": "inline"}, facts("in/signed.gpg"))
		if h.read("in/signed") != payload {
			t.Error("content differs")
		}
	})

	t.Run("missing key", func(t *testing.T) {
		h := h.with(t)
		h.fail("ENCRYPT", map[string]any{"key": "nobody"}, f, `key "nobody": no such key`)
	})
}

// TestProtectedKeyWithGPG: a private key gpg made with a passphrase
// (--quick-gen-key --passphrase) is refused by Import without it or with
// a wrong one, and accepted with it; the stored key holds no passphrase
// protection (the tasks open it as it is) and signs what gpg verifies
// (SIGN) and opens what gpg encrypted to it (DECRYPT).
func TestProtectedKeyWithGPG(t *testing.T) {
	const pass = "correct horse battery staple 7"
	g := newGPG(t)
	uid := "Bank <files@bank.example>"
	g.run(nil, "--passphrase", pass, "--quick-gen-key", uid, "future-default", "default", "never")
	pub := string(g.run(nil, "--armor", "--export", uid))
	sec := string(g.run(nil, "--passphrase", pass, "--armor", "--export-secret-keys", uid))

	for _, p := range []string{"", "not the passphrase"} {
		_, err := Import(sec, p)
		if !errors.Is(err, ErrKeyPassphrase) {
			t.Fatalf("Import with %q: %v", p, err)
		}
		if strings.Contains(err.Error(), pass) || (p != "" && strings.Contains(err.Error(), p)) {
			t.Errorf("the error shows a passphrase: %v", err)
		}
	}
	k, err := Import(sec, pass)
	if err != nil {
		t.Fatal(err)
	}
	pubK, err := Import(pub, "")
	if err != nil || pubK.Private || !k.Private || k.Fingerprint != pubK.Fingerprint || len(k.Fingerprint) != 40 {
		t.Fatalf("private %+v, public %+v, %v", k, pubK, err)
	}
	if k.Armored == sec || strings.Contains(k.Armored, pass) {
		t.Fatal("the stored key is the protected one, or holds the passphrase")
	}
	// As stored, gpg imports it without asking for a passphrase.
	other := newGPG(t)
	other.run([]byte(k.Armored), "--import")

	h := newHome(t)
	h.keys["bank"], h.keys["bank-private"] = pub, k.Armored
	payload := strings.Repeat("statement line\n", 3000)
	h.put("in/statement.txt", payload)
	h.run("SIGN", map[string]any{"key": "bank-private"}, facts("in/statement.txt"))
	dir := filepath.Join(h.dir, "in")
	g.run(nil, "--verify", filepath.Join(dir, "statement.txt.sig"), filepath.Join(dir, "statement.txt"))

	enc := g.run([]byte(payload), "--encrypt", "--recipient", "files@bank.example")
	h.put("in/to-bank.txt.gpg", string(enc))
	if r := h.run("DECRYPT", map[string]any{"key": "bank-private"}, facts("in/to-bank.txt.gpg")); h.read(r.Path) != payload {
		t.Fatal("DECRYPT of gpg's message differs")
	}

	// The key as gpg exported it, protected, is refused by the tasks.
	h.keys["bank-protected"] = sec
	h.fail("SIGN", map[string]any{"key": "bank-protected"}, facts("in/statement.txt"), "protected by a passphrase")
}
