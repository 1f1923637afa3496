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
	"sync"

	"github.com/udmg/gateway/fsm"
)

// Secrets seals the secrets the cluster keeps at rest (remote account
// passwords and private keys, FTPS keys, the SSH host key) with AES-256-GCM
// under the cluster's data key. The data key lives in the replicated state
// (fsm.State.Secrets) sealed with this node's key-encryption key (KEK), which
// never enters the log: a copied Raft log or snapshot without the KEK opens
// nothing, and no file among the users' files holds a key.
type Secrets struct {
	keks   []cipher.AEAD // the first seals; all open (a JoinToken rotation's "new,old")
	source string        // where the KEKs come from, for messages
	legacy string        // the previous release's key file, read only to move it in

	mu     sync.Mutex
	keys   func() *fsm.SecretsKeys
	opened map[string]openedKey // data keys by their sealed form
}

// openedKey is an unsealed data key and whether the first (sealing) KEK
// opened it.
type openedKey struct {
	aead    cipher.AEAD
	primary bool
}

// KEK is this node's key-encryption key and where it comes from, so that an
// error can name the setting an operator has to fix.
type KEK struct {
	Key    []byte
	Source string
}

// sealPrefix versions the sealed form of a value: "aes1:" +
// base64(nonce | ciphertext). The previous release wrote the same form under
// the key of <GatewayHome>/passphrase.aes, so its values stay readable once
// that key is moved into the state.
const sealPrefix = "aes1:"

// kekPrefix versions the sealed form of a data key.
const kekPrefix = "kek1:"

// kekAAD binds a sealed data key to its use.
var kekAAD = []byte("udmg cluster secrets key")

// NewSecrets keeps the data key in the state returned by Bind's function,
// sealed with kek; older KEKs (the old token while JoinToken is rotated)
// still open it. legacyFile is the previous release's key file
// (<GatewayHome>/passphrase.aes), read only by LegacyKey.
func NewSecrets(kek KEK, legacyFile string, older ...KEK) (*Secrets, error) {
	s := &Secrets{source: kek.Source, legacy: legacyFile, opened: map[string]openedKey{}}
	for _, k := range append([]KEK{kek}, older...) {
		aead, err := newAEAD(k.Key)
		if err != nil {
			return nil, fmt.Errorf("key-encryption key from %s: %w", k.Source, err)
		}
		s.keks = append(s.keks, aead)
	}
	return s, nil
}

// Bind gives Seal and Open the data keys of the replicated state
// (fsm.State.Secrets, which the machine replaces and never mutates).
func (s *Secrets) Bind(keys func() *fsm.SecretsKeys) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

// Source names what this node's KEK comes from ("[cluster] JoinToken", …).
func (s *Secrets) Source() string { return s.source }

// KEKFromFile reads an operator key file ([database] AESPassphrase): 32
// bytes in hex, or any other text taken as a passphrase.
func KEKFromFile(path string) (KEK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return KEK{}, fmt.Errorf("read key file: %w", err)
	}
	return KEK{Key: parseKeyFile(b), Source: "[database] AESPassphrase " + path}, nil
}

// KEKFile is the name, in DataDir, of a lone node's generated KEK.
const KEKFile = "secrets.kek"

// KEKInDataDir is the KEK of a lone node configured with neither JoinToken
// nor AESPassphrase: 32 random bytes generated once in DataDir (0600), out
// of reach of every rule, transfer and account.
func KEKInDataDir(dataDir string) (KEK, error) {
	path := filepath.Join(dataDir, KEKFile)
	source := "the generated key " + path + " (set [cluster] JoinToken or [database] AESPassphrase for a cluster)"
	b, err := os.ReadFile(path)
	if err == nil {
		key, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(key) != 32 {
			return KEK{}, fmt.Errorf("key-encryption key %s: not 32 bytes in hex", path)
		}
		return KEK{Key: key, Source: source}, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return KEK{}, fmt.Errorf("key-encryption key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return KEK{}, fmt.Errorf("generate key-encryption key: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return KEK{}, fmt.Errorf("key-encryption key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return KEK{}, fmt.Errorf("create key-encryption key: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return KEK{}, fmt.Errorf("create key-encryption key %s: %w", path, err)
	}
	return KEK{Key: key, Source: source}, nil
}

// parseKeyFile reads the key files of this and the previous release: 32
// bytes in hex, or a passphrase from which the key is derived.
func parseKeyFile(b []byte) []byte {
	text := strings.TrimSpace(string(b))
	if key, err := hex.DecodeString(text); err == nil && len(key) == 32 {
		return key
	}
	// A fixed derivation: a passphrase typed by an operator must give the
	// same key on every node.
	h := sha256.Sum256([]byte("udmg-aes-passphrase:" + text))
	return h[:]
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("AES key: %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// NewKey generates a data key and returns it sealed with the KEK, as it
// enters the state.
func (s *Secrets) NewKey() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate secrets key: %w", err)
	}
	return s.sealKey(key)
}

// LegacyKey reads the previous release's key file and returns its key
// sealed with the KEK, to become the data key of a cluster upgraded from
// that layout; "" when there is no such file.
func (s *Secrets) LegacyKey() (sealed, path string, err error) {
	if s.legacy == "" {
		return "", "", nil
	}
	b, err := os.ReadFile(s.legacy)
	if errors.Is(err, os.ErrNotExist) {
		return "", s.legacy, nil
	}
	if err != nil {
		return "", s.legacy, fmt.Errorf("read the previous release's key file: %w", err)
	}
	sealed, err = s.sealKey(parseKeyFile(b))
	return sealed, s.legacy, err
}

// CheckKey reports whether this node's KEK opens a sealed data key.
func (s *Secrets) CheckKey(sealed string) error {
	_, err := s.openKey(sealed)
	return err
}

func (s *Secrets) sealKey(key []byte) (string, error) {
	kek := s.keks[0]
	nonce := make([]byte, kek.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal secrets key: %w", err)
	}
	return kekPrefix + base64.StdEncoding.EncodeToString(kek.Seal(nonce, nonce, key, kekAAD)), nil
}

// openKey unseals a data key (cached: sealed keys never change meaning).
func (s *Secrets) openKey(sealed string) (cipher.AEAD, error) {
	k, err := s.unsealKey(sealed)
	return k.aead, err
}

func (s *Secrets) unsealKey(sealed string) (openedKey, error) {
	s.mu.Lock()
	k, ok := s.opened[sealed]
	s.mu.Unlock()
	if ok {
		return k, nil
	}
	b64, ok := strings.CutPrefix(sealed, kekPrefix)
	if !ok {
		return openedKey{}, errors.New("the cluster's secrets key is in an unknown form")
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) < s.keks[0].NonceSize() {
		return openedKey{}, errors.New("the cluster's secrets key is malformed")
	}
	for i, kek := range s.keks {
		key, err := kek.Open(nil, b[:kek.NonceSize()], b[kek.NonceSize():], kekAAD)
		if err != nil {
			continue
		}
		aead, err := newAEAD(key)
		if err != nil {
			return openedKey{}, err
		}
		k = openedKey{aead: aead, primary: i == 0}
		s.mu.Lock()
		s.opened[sealed] = k
		s.mu.Unlock()
		return k, nil
	}
	return openedKey{}, fmt.Errorf("the cluster's secrets key does not open with this node's key-encryption key (from %s): set the same [cluster] JoinToken or [database] AESPassphrase as the other nodes", s.source)
}

// NeedsRewrap says whether a sealed data key opens only with an older KEK
// (the old token of a JoinToken rotation): the ACTIVE node then rotates, so
// that the key is sealed with the new token before the old one is dropped.
func (s *Secrets) NeedsRewrap(sealed string) bool {
	k, err := s.unsealKey(sealed)
	return err == nil && !k.primary
}

// current returns the state's data keys.
func (s *Secrets) current() (*fsm.SecretsKeys, error) {
	s.mu.Lock()
	keys := s.keys
	s.mu.Unlock()
	if keys == nil {
		return nil, errors.New("secrets: not bound to the cluster state yet")
	}
	k := keys()
	if k == nil {
		return nil, errors.New("secrets: the cluster has no secrets key yet (it is created when a node first becomes ACTIVE)")
	}
	return k, nil
}

// Seal encrypts plain under the cluster's current data key; "" stays "".
func (s *Secrets) Seal(plain []byte) (string, error) {
	if len(plain) == 0 {
		return "", nil
	}
	k, err := s.current()
	if err != nil {
		return "", err
	}
	return s.SealWith(k.Current, plain)
}

// SealWith encrypts plain under the data key sealedKey (bootstrap seals the
// host key before the key is in the state).
func (s *Secrets) SealWith(sealedKey string, plain []byte) (string, error) {
	if len(plain) == 0 {
		return "", nil
	}
	aead, err := s.openKey(sealedKey)
	if err != nil {
		return "", err
	}
	return seal(aead, plain)
}

func seal(aead cipher.AEAD, plain []byte) (string, error) {
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	return sealPrefix + base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, nil)), nil
}

// Open decrypts what Seal produced, under the current data key or the one
// before the last rotation; "" stays empty.
func (s *Secrets) Open(sealed string) ([]byte, error) {
	if sealed == "" {
		return nil, nil
	}
	k, err := s.current()
	if err != nil {
		return nil, err
	}
	return s.openWith(k, sealed)
}

func (s *Secrets) openWith(k *fsm.SecretsKeys, sealed string) ([]byte, error) {
	b64, ok := strings.CutPrefix(sealed, sealPrefix)
	if !ok {
		return nil, errors.New("open secret: not sealed by this gateway")
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("open secret: malformed")
	}
	for i, key := range []string{k.Current, k.Previous} {
		if key == "" {
			continue
		}
		aead, err := s.openKey(key)
		if err != nil && i == 0 {
			return nil, fmt.Errorf("open secret: %w", err)
		}
		if err != nil {
			continue // the previous key under a token this node no longer has
		}
		if len(b) < aead.NonceSize() {
			return nil, errors.New("open secret: malformed")
		}
		if plain, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], nil); err == nil {
			return plain, nil
		}
	}
	return nil, errors.New("open secret: not sealed with the cluster's secrets key, or damaged")
}

// Rotation computes a rotation of st: a new data key and every sealed value
// of st resealed with it, for one OpSecretsRotate. The machine refuses it
// (fsm.ErrSecretsChanged) if st changed meanwhile; the caller computes it
// again from the newer state.
func (s *Secrets) Rotation(st fsm.State) (*fsm.SecretsArgs, error) {
	if st.Secrets == nil {
		return nil, errors.New("rotate: the cluster has no secrets key yet")
	}
	newKey, err := s.NewKey()
	if err != nil {
		return nil, err
	}
	aead, err := s.openKey(newKey)
	if err != nil {
		return nil, err
	}
	args := &fsm.SecretsArgs{Key: newKey, Old: st.Secrets.Current}
	for _, v := range st.Sealed() {
		plain, err := s.openWith(st.Secrets, v.Old)
		if err != nil {
			return nil, fmt.Errorf("rotate: %s: %w", v.Ref, err)
		}
		if v.New, err = seal(aead, plain); err != nil {
			return nil, err
		}
		args.Values = append(args.Values, v)
	}
	return args, nil
}
