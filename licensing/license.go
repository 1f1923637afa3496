package licensing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// VendorKey is the vendor's public key that license files must be signed
// with; the product build sets it (tests and tools pass their own keys to
// Parse and Load instead). Nil means no license file can be accepted.
var VendorKey ed25519.PublicKey

// EvaluationID is the ID and licensee of the license the gateway runs on when
// no license file is configured, so that operators recognise it in /api/license.
const EvaluationID = "evaluation"

// IssuedSkew is how far a node's clock may lag the vendor's before a freshly
// issued license is refused as not yet valid; it spares customers a confusing
// error when they install a license minutes after it was signed.
const IssuedSkew = 5 * time.Minute

// MaxFileSize bounds what Load reads, so that a wrong path (a log, a device)
// fails fast instead of filling memory; real license files are a few hundred
// bytes.
const MaxFileSize = 64 << 10

// Sentinel errors, one per way a license file is refused, so that callers can
// tell them apart with errors.Is and operators read a precise reason.
var (
	// ErrMalformed: the file is not a license document (the parent of
	// ErrEmpty, ErrTruncated and ErrNotJSON, so one test catches all).
	ErrMalformed = errors.New("malformed license file")
	// ErrEmpty: the file has no content at all.
	ErrEmpty = errors.New("empty")
	// ErrTruncated: the JSON ends early, typically a partial copy.
	ErrTruncated = errors.New("truncated")
	// ErrNotJSON: the content is not JSON at all.
	ErrNotJSON = errors.New("not JSON")
	// ErrNoKey: no valid vendor public key was given, so nothing can be verified.
	ErrNoKey = errors.New("no vendor public key to verify the license with")
	// ErrSignature: the signature does not match the license (altered file or
	// another signing key); ErrWrongKey also matches it.
	ErrSignature = errors.New("license signature does not verify")
	// ErrWrongKey: the file names a signing key other than the product's, so it
	// was issued for another product or by another vendor key.
	ErrWrongKey = errors.New("signed with another vendor key")
	// ErrMissingField: the signed license lacks a required field.
	ErrMissingField = errors.New("missing license field")
	// ErrInvalidField: a signed field has a wrong type or an impossible value.
	ErrInvalidField = errors.New("invalid license field")
	// ErrNotYetValid: the license's issue date is still in the future.
	ErrNotYetValid = errors.New("not yet valid")
	// ErrExpired: the license's expiry date has passed.
	ErrExpired = errors.New("expired")
)

// License is what a verified license file grants. Expires is the first
// instant the license is no longer valid; a zero Expires means it never
// expires, which only the built-in Evaluation license has (Parse refuses it).
type License struct {
	ID       string    `json:"id"`
	Licensee string    `json:"licensee"`
	Nodes    int       `json:"nodes"`
	Issued   time.Time `json:"issued,omitzero"`
	Expires  time.Time `json:"expires,omitzero"`
}

// Evaluation is the license a gateway without a license file runs on: one
// licensed node, no expiry.
func Evaluation() License {
	return License{ID: EvaluationID, Licensee: EvaluationID, Nodes: 1}
}

// IsEvaluation reports whether l is the built-in evaluation license rather
// than a signed one, so that the API and logs can say so.
func (l License) IsEvaluation() bool {
	return l.ID == EvaluationID && l.Expires.IsZero()
}

// Check reports whether l is valid at now (ErrNotYetValid, ErrExpired or
// nil); the cluster re-checks a loaded license as time passes.
func (l License) Check(now time.Time) error {
	if !l.Issued.IsZero() && now.Before(l.Issued.Add(-IssuedSkew)) {
		return fmt.Errorf("%w: valid from %s", ErrNotYetValid, when(l.Issued))
	}
	if !l.Expires.IsZero() && !now.Before(l.Expires) {
		return fmt.Errorf("%w on %s", ErrExpired, when(l.Expires))
	}
	return nil
}

// NodeLimit is how many nodes l licenses at now: Nodes while it is valid, 0
// before or after its validity window, so an expired license licenses no one.
func (l License) NodeLimit(now time.Time) int {
	if l.Nodes < 1 || l.Check(now) != nil {
		return 0
	}
	return l.Nodes
}

// payload is the signed part of the file as written; pointers tell a missing
// field from a zero one.
type payload struct {
	ID       *string `json:"id"`
	Licensee *string `json:"licensee"`
	Nodes    *int    `json:"nodes"`
	Issued   *string `json:"issued"`
	Expires  *string `json:"expires"`
}

// document is the whole file; License keeps the signed bytes verbatim.
type document struct {
	License   json.RawMessage `json:"license"`
	Key       string          `json:"key,omitempty"`
	Signature *string         `json:"signature"`
}

// sigEncoding refuses non-canonical base64 (stray padding bits), so that a
// flipped character never decodes to the same signature.
var sigEncoding = base64.StdEncoding.Strict()

// Sign produces a license file for l signed with priv (the vendor's
// `udmgctl license sign`). Times are written in UTC to the second.
func Sign(l License, priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign license: %w: private key has %d bytes, want %d", ErrKey, len(priv), ed25519.PrivateKeySize)
	}
	l.Issued = l.Issued.UTC().Truncate(time.Second)
	l.Expires = l.Expires.UTC().Truncate(time.Second)
	if err := validate(l); err != nil {
		return nil, fmt.Errorf("sign license: %w", err)
	}
	issued, expires := l.Issued.Format(time.RFC3339), l.Expires.Format(time.RFC3339)
	raw, err := json.Marshal(payload{ID: &l.ID, Licensee: &l.Licensee, Nodes: &l.Nodes, Issued: &issued, Expires: &expires})
	if err != nil {
		return nil, fmt.Errorf("sign license: %w", err)
	}
	sig := sigEncoding.EncodeToString(ed25519.Sign(priv, raw))
	pub := priv.Public().(ed25519.PublicKey)
	out, err := json.MarshalIndent(document{License: raw, Key: KeyID(pub), Signature: &sig}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("sign license: %w", err)
	}
	return append(out, '\n'), nil
}

// validate checks the fields every license must have, for Sign and Parse alike.
func validate(l License) error {
	for _, f := range []struct{ name, v string }{{"id", l.ID}, {"licensee", l.Licensee}} {
		if strings.TrimSpace(f.v) == "" {
			return fmt.Errorf("%w %q", ErrMissingField, f.name)
		}
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidField, f.name)
		}
	}
	if l.Nodes < 1 {
		return fmt.Errorf("%w \"nodes\": must be at least 1, got %d", ErrInvalidField, l.Nodes)
	}
	if l.Issued.IsZero() {
		return fmt.Errorf("%w %q", ErrMissingField, "issued")
	}
	if l.Expires.IsZero() {
		return fmt.Errorf("%w %q", ErrMissingField, "expires")
	}
	if !l.Expires.After(l.Issued) {
		return fmt.Errorf("%w \"expires\": %s is not after issued %s", ErrInvalidField, when(l.Expires), when(l.Issued))
	}
	return nil
}

// Parse verifies a license file against pub and checks it is valid at now.
// The signature is checked before any field is trusted. When the only fault
// is the date (ErrNotYetValid, ErrExpired) the license is returned along with
// the error, so that operators can be shown what they have.
func Parse(data []byte, pub ed25519.PublicKey, now time.Time) (License, error) {
	if len(pub) != ed25519.PublicKeySize {
		return License{}, fmt.Errorf("%w (key has %d bytes, want %d)", ErrNoKey, len(pub), ed25519.PublicKeySize)
	}
	doc, err := decodeDocument(data)
	if err != nil {
		return License{}, err
	}
	sig, err := sigEncoding.DecodeString(*doc.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return License{}, fmt.Errorf("%w: the signature field is not a base64 ed25519 signature", ErrSignature)
	}
	if want := KeyID(pub); doc.Key != "" && doc.Key != want {
		return License{}, fmt.Errorf("%w: %w: file names key %q, this product trusts key %q",
			ErrSignature, ErrWrongKey, truncate(doc.Key, 40), want)
	}
	var signed bytes.Buffer
	if err := json.Compact(&signed, doc.License); err != nil { // cannot fail: decoded above
		return License{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !ed25519.Verify(pub, signed.Bytes(), sig) {
		return License{}, fmt.Errorf("%w: the file was altered or signed with another key", ErrSignature)
	}
	l, err := decodePayload(doc.License)
	if err != nil {
		return License{}, err
	}
	if err := l.Check(now); err != nil {
		return l, err
	}
	return l, nil
}

// decodeDocument splits a file into its signed bytes and signature, telling
// empty, truncated and non-JSON input apart.
func decodeDocument(data []byte) (document, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return document{}, fmt.Errorf("%w: %w", ErrMalformed, ErrEmpty)
	}
	if !json.Valid(data) {
		var probe any
		dec := json.NewDecoder(bytes.NewReader(data))
		err := dec.Decode(&probe)
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return document{}, fmt.Errorf("%w: %w: the JSON ends after %d bytes", ErrMalformed, ErrTruncated, len(data))
		case err == nil: // one valid value followed by something else
			return document{}, fmt.Errorf("%w: unexpected data after the JSON document at byte %d", ErrMalformed, dec.InputOffset())
		default:
			return document{}, fmt.Errorf("%w: %w: %v", ErrMalformed, ErrNotJSON, err)
		}
	}
	doc, err := splitDocument(data)
	if err != nil {
		return document{}, fmt.Errorf("%w: not a license document: %v", ErrMalformed, err)
	}
	if len(doc.License) == 0 || bytes.Equal(doc.License, []byte("null")) {
		return document{}, fmt.Errorf("%w: no \"license\" object", ErrMalformed)
	}
	if doc.License[0] != '{' {
		return document{}, fmt.Errorf("%w: \"license\" is not an object", ErrMalformed)
	}
	if doc.Signature == nil {
		return document{}, fmt.Errorf("%w: no \"signature\"", ErrMalformed)
	}
	return doc, nil
}

// splitDocument reads the top-level object with exact, unique keys: the
// unsigned wrapper tolerates no unknown, duplicate or differently cased field,
// so no edit anywhere in a file goes unnoticed.
func splitDocument(data []byte) (document, error) {
	var doc document
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return doc, errors.New("want a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return doc, err
		}
		key, _ := tok.(string)
		if seen[key] {
			return doc, fmt.Errorf("field %q appears twice", truncate(key, 40))
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return doc, err
		}
		switch key {
		case "license":
			doc.License = raw
		case "signature":
			var sig string
			if err := json.Unmarshal(raw, &sig); err != nil {
				return doc, errors.New(`"signature" is not a string`)
			}
			doc.Signature = &sig
		case "key":
			if err := json.Unmarshal(raw, &doc.Key); err != nil {
				return doc, errors.New(`"key" is not a string`)
			}
		default:
			return doc, fmt.Errorf("unknown field %q", truncate(key, 40))
		}
	}
	return doc, nil
}

// decodePayload turns verified bytes into a License, refusing missing and
// impossible fields.
func decodePayload(raw []byte) (License, error) {
	var p payload
	if err := json.Unmarshal(raw, &p); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return License{}, fmt.Errorf("%w %q: got %s, want %s", ErrInvalidField, te.Field, te.Value, te.Type)
		}
		return License{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	for _, f := range []struct {
		name    string
		present bool
	}{{"id", p.ID != nil}, {"licensee", p.Licensee != nil}, {"nodes", p.Nodes != nil}, {"issued", p.Issued != nil}, {"expires", p.Expires != nil}} {
		if !f.present {
			return License{}, fmt.Errorf("%w %q", ErrMissingField, f.name)
		}
	}
	l := License{ID: *p.ID, Licensee: *p.Licensee, Nodes: *p.Nodes}
	var err error
	if l.Issued, err = parseTime("issued", *p.Issued); err != nil {
		return License{}, err
	}
	if l.Expires, err = parseTime("expires", *p.Expires); err != nil {
		return License{}, err
	}
	if err := validate(l); err != nil {
		return License{}, err
	}
	return l, nil
}

func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("%w %q", ErrMissingField, name)
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w %q: %q is not an RFC 3339 time", ErrInvalidField, name, truncate(s, 40))
	}
	return t, nil
}

// Load reads and verifies the license file at path; every error names the
// file ("load license /etc/udmg/license.json: expired on 2026-01-01").
func Load(path string, pub ed25519.PublicKey, now time.Time) (License, error) {
	data, err := readFile(path)
	if err != nil {
		return License{}, fmt.Errorf("load license %s: %w", path, err)
	}
	l, err := Parse(data, pub, now)
	if err != nil {
		return l, fmt.Errorf("load license %s: %w", path, err)
	}
	return l, nil
}

// readFile reads at most MaxFileSize bytes; errors leave the path to the caller.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, unwrapPath(err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxFileSize)
	}
	return data, nil
}

// unwrapPath drops the *fs.PathError wrapper (whose text repeats the path)
// while keeping errors.Is(err, fs.ErrNotExist) working.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// when formats a license date the way operators wrote it: a bare date at
// midnight UTC, RFC 3339 otherwise.
func when(t time.Time) string {
	u := t.UTC()
	if u.Hour() == 0 && u.Minute() == 0 && u.Second() == 0 && u.Nanosecond() == 0 {
		return u.Format(time.DateOnly)
	}
	return u.Format(time.RFC3339)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
