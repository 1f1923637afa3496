// Package licensing reads the vendor-signed license file and decides which
// cluster nodes are licensed.
//
// A license file is a JSON document
//
//	{"license": {"id": ..., "licensee": ..., "nodes": N, "issued": RFC 3339, "expires": RFC 3339},
//	 "key": "<KeyID of the signing key, a hint only>",
//	 "signature": "<base64 ed25519 signature over the license object's bytes>"}
//
// The signature covers the license object exactly as it appears in the file
// (kept as raw JSON, never re-encoded), after removing insignificant
// whitespace, so a file survives pretty-printing but not any other edit.
// Parse checks the signature before it looks at a single field, and every
// way a file can be refused has its own sentinel error (ErrEmpty,
// ErrTruncated, ErrNotJSON, ErrMalformed, ErrNoKey, ErrWrongKey,
// ErrSignature, ErrMissingField, ErrInvalidField, ErrNotYetValid,
// ErrExpired), so that operators read what is wrong and callers can test it
// with errors.Is.
//
// Without a license file the gateway runs as a one-node evaluation
// (Evaluation).
//
// The slot rules (Slots, MayBeActive) are pure functions of their arguments:
// they never read the clock, so the replicated state machine can call them
// with the time carried by a log entry and every node reaches the same
// answer. Slots go to nodes in order of first registration; a node OFFLINE
// for longer than the deadline gives its slot back. An UNLICENSED node may
// become ACTIVE only when the license allows exactly one node and no
// licensed node other than itself is alive (the seed's rule).
//
// Only the standard library is used (crypto/ed25519, encoding/json,
// crypto/x509 for PEM keys).
package licensing
