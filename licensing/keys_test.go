package licensing

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateKeySignsVerifiableLicenses(t *testing.T) {
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(pub) != ed25519.PublicKeySize || len(priv) != ed25519.PrivateKeySize {
		t.Fatalf("key sizes %d/%d", len(pub), len(priv))
	}
	pub2, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if pub.Equal(pub2) {
		t.Fatal("two generated keys are equal")
	}
	if _, err := Parse(mustSign(t, testLic, priv), pub, testNow); err != nil {
		t.Fatal(err)
	}
	if KeyID(pub) == KeyID(pub2) || len(KeyID(pub)) != 16 {
		t.Fatalf("KeyID %q / %q", KeyID(pub), KeyID(pub2))
	}
}

func TestKeyEncodings(t *testing.T) {
	pub, priv := testKey(t, 5)
	pubPEM, err := EncodePublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := EncodePrivateKeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(pubPEM), "-----BEGIN PUBLIC KEY-----") || !strings.HasPrefix(string(privPEM), "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("PEM headers:\n%s\n%s", pubPEM, privPEM)
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(priv)

	for name, in := range map[string]string{
		"PEM":                 string(pubPEM),
		"PEM with blanks":     "\n\n" + string(pubPEM) + "\n",
		"base64":              EncodePublicKey(pub),
		"base64 newline":      EncodePublicKey(pub) + "\n",
		"base64 unpadded":     strings.TrimRight(EncodePublicKey(pub), "="),
		"base64 of PKIX DER":  base64.StdEncoding.EncodeToString(der),
		"base64 DER unpadded": base64.RawStdEncoding.EncodeToString(der),
	} {
		got, err := ParsePublicKey([]byte(in))
		if err != nil || !got.Equal(pub) {
			t.Errorf("ParsePublicKey(%s): %v", name, err)
		}
	}
	for name, in := range map[string]string{
		"PEM":                  string(privPEM),
		"base64 64 bytes":      base64.StdEncoding.EncodeToString(priv),
		"base64 seed":          base64.StdEncoding.EncodeToString(priv.Seed()),
		"base64 of PKCS#8 DER": base64.StdEncoding.EncodeToString(pkcs8),
	} {
		got, err := ParsePrivateKey([]byte(in))
		if err != nil || !got.Equal(priv) {
			t.Errorf("ParsePrivateKey(%s): %v", name, err)
		}
	}

	corrupt := append(ed25519.PrivateKey(nil), priv...)
	corrupt[40] ^= 1
	for name, in := range map[string]string{
		"private PEM as public": string(privPEM),
		"garbage":               "not a key at all!",
		"empty":                 "",
		"wrong length":          base64.StdEncoding.EncodeToString(make([]byte, 31)),
		"bad PEM body":          "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
	} {
		if _, err := ParsePublicKey([]byte(in)); !errors.Is(err, ErrKey) {
			t.Errorf("ParsePublicKey(%s) = %v, want ErrKey", name, err)
		}
	}
	for name, in := range map[string]string{
		"public PEM as private": string(pubPEM),
		"garbage":               "###",
		"corrupt halves":        base64.StdEncoding.EncodeToString(corrupt),
		"wrong length":          base64.StdEncoding.EncodeToString(make([]byte, 50)),
	} {
		if _, err := ParsePrivateKey([]byte(in)); !errors.Is(err, ErrKey) {
			t.Errorf("ParsePrivateKey(%s) = %v, want ErrKey", name, err)
		}
	}
	if _, err := EncodePublicKeyPEM(pub[:3]); !errors.Is(err, ErrKey) {
		t.Errorf("EncodePublicKeyPEM short: %v", err)
	}
	if _, err := EncodePrivateKeyPEM(priv[:3]); !errors.Is(err, ErrKey) {
		t.Errorf("EncodePrivateKeyPEM short: %v", err)
	}
}

// TestKeyFiles is the vendor's workflow: generate, store, load, sign, verify.
func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	pubPath, privPath := filepath.Join(dir, "vendor.pub"), filepath.Join(dir, "vendor.key")
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePublicKey(pubPath, pub); err != nil {
		t.Fatal(err)
	}
	if err := WritePrivateKey(privPath, priv); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(privPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode: %v, %v", st.Mode(), err)
	}
	err = WritePrivateKey(privPath, priv)
	if !errors.Is(err, fs.ErrExist) || strings.Count(err.Error(), privPath) != 1 {
		t.Errorf("overwriting a private key: %v", err)
	}

	loadedPub, err := LoadPublicKey(pubPath)
	if err != nil || !loadedPub.Equal(pub) {
		t.Fatalf("LoadPublicKey: %v", err)
	}
	loadedPriv, err := LoadPrivateKey(privPath)
	if err != nil || !loadedPriv.Equal(priv) {
		t.Fatalf("LoadPrivateKey: %v", err)
	}
	licPath := filepath.Join(dir, "license.json")
	if err := os.WriteFile(licPath, mustSign(t, testLic, loadedPriv), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(licPath, loadedPub, testNow); err != nil {
		t.Fatal(err)
	}

	if _, err := LoadPublicKey(privPath); !errors.Is(err, ErrKey) || !strings.HasPrefix(err.Error(), "load public key "+privPath+": ") {
		t.Errorf("LoadPublicKey(private file): %v", err)
	}
	missing := filepath.Join(dir, "nope")
	if _, err := LoadPrivateKey(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("LoadPrivateKey(missing): %v", err)
	}
	if err := WritePublicKey(filepath.Join(dir, "x.pub"), pub[:5]); !errors.Is(err, ErrKey) {
		t.Errorf("WritePublicKey short: %v", err)
	}
}
