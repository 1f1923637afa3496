package tasks

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// BenchmarkEncrypt100KiB is ENCRYPT alone on the files (100 KiB,
// to an ed25519/cv25519 key, through temp+fsync+rename): the ENCRYPT part
// of the receive → ENCRYPT → TRANSFER figure, in files/s.
func BenchmarkEncrypt100KiB(b *testing.B) {
	_, pub := goKey(b, "bench@example.net")
	dir := b.TempDir()
	env := Env{Home: dir, Keys: func(string) (string, error) { return pub, nil }}
	data := make([]byte, 100<<10)
	rand.Read(data)
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o750); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in", "file.bin"), data, 0o640); err != nil {
		b.Fatal(err)
	}
	task := Task{Type: "ENCRYPT", Args: map[string]any{"key": "bench"}}
	f := facts("in/file.bin")
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := Run(context.Background(), task, f, env); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// goKey makes an ed25519/cv25519 key pair in Go (no gpg needed) and returns
// it with its armored public key.
func goKey(tb testing.TB, email string) (*openpgp.Entity, string) {
	tb.Helper()
	e, err := openpgp.NewEntity(email, "", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		tb.Fatal(err)
	}
	var pub strings.Builder
	w, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return e, pub.String()
}
