package licensing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ErrKey reports a key that cannot be used (wrong size, wrong type, bad
// encoding), so that the CLI can tell a bad key file from a bad license.
var ErrKey = errors.New("invalid key")

// PEM block types: the standard PKIX / PKCS #8 ones, so openssl can read the
// vendor's key files too.
const (
	pemPublic  = "PUBLIC KEY"
	pemPrivate = "PRIVATE KEY"
)

// GenerateKey makes a new vendor key pair for `udmgctl license keygen`.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate license key: %w", err)
	}
	return pub, priv, nil
}

// KeyID is a short fingerprint of a public key, written into license files so
// that a license made with another key is reported as such rather than as
// tampering.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// EncodePublicKey is the base64 form of a public key, the shortest way to
// embed it in the product or a config file.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// EncodePublicKeyPEM writes a public key as a PKIX "PUBLIC KEY" PEM block.
func EncodePublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("encode public key: %w: %d bytes, want %d", ErrKey, len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// EncodePrivateKeyPEM writes a private key as a PKCS #8 "PRIVATE KEY" PEM block.
func EncodePrivateKeyPEM(priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("encode private key: %w: %d bytes, want %d", ErrKey, len(priv), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
}

// ParsePublicKey reads a public key given as a PEM block (PKIX) or as base64
// (the raw 32 bytes or PKIX DER), whichever the operator has at hand.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	data = bytes.TrimSpace(data)
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != pemPublic {
			return nil, fmt.Errorf("%w: PEM block is %q, want %q", ErrKey, block.Type, pemPublic)
		}
		return publicFromDER(block.Bytes)
	}
	raw, err := decodeBase64(data)
	if err != nil {
		return nil, fmt.Errorf("%w: public key is neither PEM nor base64", ErrKey)
	}
	if len(raw) == ed25519.PublicKeySize {
		return ed25519.PublicKey(raw), nil
	}
	return publicFromDER(raw)
}

func publicFromDER(der []byte) (ed25519.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: public key is %T, want ed25519", ErrKey, k)
	}
	return pub, nil
}

// ParsePrivateKey reads a private key given as a PEM block (PKCS #8) or as
// base64 (the 64-byte key, the 32-byte seed, or PKCS #8 DER).
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	data = bytes.TrimSpace(data)
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != pemPrivate {
			return nil, fmt.Errorf("%w: PEM block is %q, want %q", ErrKey, block.Type, pemPrivate)
		}
		return privateFromDER(block.Bytes)
	}
	raw, err := decodeBase64(data)
	if err != nil {
		return nil, fmt.Errorf("%w: private key is neither PEM nor base64", ErrKey)
	}
	switch len(raw) {
	case ed25519.PrivateKeySize:
		priv := ed25519.PrivateKey(raw)
		// The second half must be the public key of the first; a corrupted
		// key would otherwise sign licenses nobody can verify.
		if !bytes.Equal(ed25519.NewKeyFromSeed(priv.Seed()), priv) {
			return nil, fmt.Errorf("%w: private key halves do not match", ErrKey)
		}
		return priv, nil
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	}
	return privateFromDER(raw)
}

func privateFromDER(der []byte) (ed25519.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: private key is %T, want ed25519", ErrKey, k)
	}
	return priv, nil
}

// decodeBase64 accepts standard base64 with or without padding.
func decodeBase64(data []byte) ([]byte, error) {
	s := string(bytes.TrimRight(data, "="))
	return base64.RawStdEncoding.DecodeString(s)
}

// LoadPublicKey reads a public key file (PEM or base64).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("load public key %s: %w", path, err)
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("load public key %s: %w", path, err)
	}
	return pub, nil
}

// LoadPrivateKey reads a private key file (PEM or base64).
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	priv, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	return priv, nil
}

// WritePublicKey stores pub as PEM at path (mode 0644), refusing to replace
// an existing file so that a vendor key is never lost by accident.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	data, err := EncodePublicKeyPEM(pub)
	if err != nil {
		return fmt.Errorf("write public key %s: %w", path, err)
	}
	return writeNew(path, "public", data, 0o644)
}

// WritePrivateKey stores priv as PEM at path (mode 0600), refusing to replace
// an existing file so that a vendor key is never lost by accident.
func WritePrivateKey(path string, priv ed25519.PrivateKey) error {
	data, err := EncodePrivateKeyPEM(priv)
	if err != nil {
		return fmt.Errorf("write private key %s: %w", path, err)
	}
	return writeNew(path, "private", data, 0o600)
}

func writeNew(path, kind string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s key %s: %w", kind, path, unwrapPath(err))
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s key %s: %w", kind, path, unwrapPath(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s key %s: %w", kind, path, unwrapPath(err))
	}
	return nil
}
