package transfer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Secrets seals the secrets the cluster keeps at rest (remote account
// passwords and private keys, FTPS keys) with AES-256-GCM under the key in
// [database] AESPassphrase. The key file lives on shared storage next to
// GatewayHome, so every node opens what any node sealed.
type Secrets struct {
	aead cipher.AEAD
}

// sealPrefix versions the sealed form: "aes1:" + base64(nonce | ciphertext).
const sealPrefix = "aes1:"

// LoadSecrets reads the key file at path, creating it (32 random bytes, hex,
// mode 0600) when it does not exist.
func LoadSecrets(path string) (*Secrets, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("generate AES passphrase: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("create AES passphrase %s: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.WriteString(hex.EncodeToString(key) + "\n")
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if errors.Is(err, os.ErrExist) {
			return LoadSecrets(path) // another node created it first
		}
		if err != nil {
			return nil, fmt.Errorf("create AES passphrase %s: %w", path, err)
		}
		return NewSecrets(key)
	}
	if err != nil {
		return nil, fmt.Errorf("read AES passphrase %s: %w", path, err)
	}
	text := strings.TrimSpace(string(b))
	key, err := hex.DecodeString(text)
	if err != nil || len(key) != 32 {
		// Any other content is a passphrase: derive the key from it.
		return NewSecrets(passphraseKey(text))
	}
	return NewSecrets(key)
}

// NewSecrets seals with a 32-byte key.
func NewSecrets(key []byte) (*Secrets, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("AES key: %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Secrets{aead: aead}, nil
}

func passphraseKey(p string) []byte {
	// A fixed derivation: a passphrase typed by an operator must give the
	// same key on every node.
	h := sha256.Sum256([]byte("udmg-aes-passphrase:" + p))
	return h[:]
}

// Seal encrypts plain; "" stays "".
func (s *Secrets) Seal(plain []byte) (string, error) {
	if len(plain) == 0 {
		return "", nil
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	return sealPrefix + base64.StdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, nil)), nil
}

// Open decrypts what Seal produced; "" stays empty.
func (s *Secrets) Open(sealed string) ([]byte, error) {
	if sealed == "" {
		return nil, nil
	}
	b64, ok := strings.CutPrefix(sealed, sealPrefix)
	if !ok {
		return nil, errors.New("open secret: not sealed by this gateway")
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) < s.aead.NonceSize() {
		return nil, errors.New("open secret: malformed")
	}
	plain, err := s.aead.Open(nil, b[:s.aead.NonceSize()], b[s.aead.NonceSize():], nil)
	if err != nil {
		return nil, errors.New("open secret: wrong AES passphrase or damaged value")
	}
	return plain, nil
}
