package cluster

import (
	"crypto/sha256"
	"io"

	"golang.org/x/crypto/hkdf"
)

// DeriveKey turns the cluster's JoinToken into a 32-byte key for one
// purpose ("ca", "gossip", "secrets", …): every node that knows the token
// derives the same key, and keys for different purposes are independent,
// so the token itself never has to leave the configuration.
func DeriveKey(token, purpose string) []byte {
	k := make([]byte, 32)
	r := hkdf.New(sha256.New, []byte(token), []byte("udmg cluster token v1"), []byte(purpose))
	if _, err := io.ReadFull(r, k); err != nil {
		panic("hkdf: " + err.Error()) // cannot happen for 32 bytes
	}
	return k
}
