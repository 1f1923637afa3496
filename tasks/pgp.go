package tasks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// ErrBadSignature marks a file whose OpenPGP signature does not verify.
var ErrBadSignature = errors.New("bad signature")

var signModes = []string{"detached", "inline"}

func init() {
	specs["ENCRYPT"] = kindSpec{
		args: []arg{
			{name: "key", kind: kStrings, required: true},
			{name: "path", kind: kString},
			{name: "armor", kind: kBool},
			{name: "signKey", kind: kString},
		},
		run: runEncrypt,
	}
	specs["DECRYPT"] = kindSpec{
		args: []arg{
			{name: "key", kind: kString, required: true},
			{name: "path", kind: kString},
			{name: "verifyKey", kind: kStrings},
		},
		run: runDecrypt,
	}
	specs["SIGN"] = kindSpec{
		args: []arg{
			{name: "key", kind: kString, required: true},
			{name: "mode", kind: kString, oneOf: signModes},
			{name: "armor", kind: kBool},
			{name: "path", kind: kString},
		},
		run: runSign,
	}
	specs["VERIFY"] = kindSpec{
		args: []arg{
			{name: "key", kind: kStrings, required: true},
			{name: "mode", kind: kString, oneOf: signModes},
			{name: "signature", kind: kString},
			{name: "path", kind: kString},
		},
		check: func(a args) error {
			if strings.EqualFold(a.str("mode"), "inline") {
				return a.exclusive("mode", "signature")
			}
			return a.exclusive("signature", "path")
		},
		run: runVerify,
	}
}

// keys reads the keys the argument names from Env.Keys; private asks for
// keys with their secret part usable without a passphrase.
func (c *call) keys(argName string, private bool) (openpgp.EntityList, error) {
	if c.env.Keys == nil {
		return nil, errors.New("no key store on this node")
	}
	var list openpgp.EntityList
	for _, name := range c.args.strs(argName) {
		armored, err := c.env.Keys(name)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", argName, name, err)
		}
		el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armored))
		if err != nil {
			return nil, fmt.Errorf("%s %q: not an armored OpenPGP key: %w", argName, name, err)
		}
		if private {
			for _, e := range el {
				if err := usablePrivate(e); err != nil {
					return nil, fmt.Errorf("%s %q: %w", argName, name, err)
				}
			}
		}
		list = append(list, el...)
	}
	return list, nil
}

func usablePrivate(e *openpgp.Entity) error {
	if e.PrivateKey == nil {
		return errors.New("a public key; the private key is needed")
	}
	encrypted := e.PrivateKey.Encrypted
	for _, s := range e.Subkeys {
		encrypted = encrypted || (s.PrivateKey != nil && s.PrivateKey.Encrypted)
	}
	if encrypted {
		return errors.New("protected by a passphrase; store it again with its passphrase (the import opens it)")
	}
	return nil
}

// dearmor returns the binary OpenPGP data of r, armored or not.
func dearmor(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(5)
	if !bytes.Equal(head, []byte("-----")) {
		return br, nil
	}
	block, err := armor.Decode(br)
	if err != nil {
		return nil, fmt.Errorf("armor: %w", err)
	}
	return block.Body, nil
}

// plainName is where DECRYPT and inline VERIFY write the content by default.
func plainName(src string) string {
	for _, ext := range []string{".pgp", ".gpg", ".asc"} {
		if strings.HasSuffix(strings.ToLower(src), ext) && len(src) > len(ext) {
			return src[:len(src)-len(ext)]
		}
	}
	return src + ".out"
}

// armored wraps w in ASCII armor of the block type when on.
func armored(w io.Writer, on bool, blockType string) (io.Writer, func() error, error) {
	if !on {
		return w, func() error { return nil }, nil
	}
	aw, err := armor.Encode(w, blockType, nil)
	if err != nil {
		return nil, nil, err
	}
	return aw, aw.Close, nil
}

// ENCRYPT: the file encrypted to the keys (and signed with signKey) at path
// (default FILE.pgp), which the chain follows. A rerun encrypts again
// through the same temporary name.
func runEncrypt(_ context.Context, c *call) (Result, error) {
	src, err := c.file()
	if err != nil {
		return Result{}, err
	}
	to, err := c.keys("key", false)
	if err != nil {
		return Result{}, err
	}
	var signer *openpgp.Entity
	if c.args.has("signKey") {
		s, err := c.keys("signKey", true)
		if err != nil {
			return Result{}, err
		}
		signer = s[0]
	}
	dst, err := c.argPath("path", src+".pgp")
	if err != nil {
		return Result{}, err
	}
	in, err := c.root.Open(src)
	if err != nil {
		return Result{}, err
	}
	defer in.Close()
	err = c.write(dst, func(w io.Writer) error {
		aw, closeArmor, err := armored(w, c.args.flag("armor", false), "PGP MESSAGE")
		if err != nil {
			return err
		}
		hints := &openpgp.FileHints{FileName: filepath.Base(src), IsBinary: true}
		pw, err := openpgp.Encrypt(aw, to, signer, hints, nil)
		if err != nil {
			return err
		}
		if _, err := io.Copy(pw, in); err != nil {
			return err
		}
		return errors.Join(pw.Close(), closeArmor())
	})
	if err != nil {
		return Result{}, err
	}
	return Result{Path: dst, Output: "encrypted to " + dst}, nil
}

// readSigned reads an OpenPGP message (armored or not), decrypted with kr
// if need be, into w and, when verifiers are given, refuses it unless one
// of them signed it. The check comes after the whole body is read (when
// OpenPGP can tell), and before write renames.
func readSigned(src io.Reader, w io.Writer, kr, verifiers openpgp.EntityList) error {
	data, err := dearmor(src)
	if err != nil {
		return err
	}
	md, err := openpgp.ReadMessage(data, append(kr, verifiers...), nil, nil)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, md.UnverifiedBody); err != nil {
		return err
	}
	if len(verifiers) == 0 {
		return nil
	}
	switch {
	case !md.IsSigned:
		return fmt.Errorf("%w: the message is not signed", ErrBadSignature)
	case md.SignedBy == nil || !slices.ContainsFunc(verifiers, func(e *openpgp.Entity) bool {
		return e.PrimaryKey.KeyId == md.SignedBy.Entity.PrimaryKey.KeyId
	}):
		return fmt.Errorf("%w: signed by key %X, none of the given keys", ErrBadSignature, md.SignedByKeyId)
	case md.SignatureError != nil:
		return fmt.Errorf("%w: %v", ErrBadSignature, md.SignatureError)
	}
	return nil
}

// DECRYPT: the file decrypted with the private key at path (default FILE
// without .pgp, .gpg or .asc), which the chain follows; with verifyKey the
// message must be signed by one of those keys.
func runDecrypt(_ context.Context, c *call) (Result, error) {
	src, err := c.file()
	if err != nil {
		return Result{}, err
	}
	kr, err := c.keys("key", true)
	if err != nil {
		return Result{}, err
	}
	var verifiers openpgp.EntityList
	if c.args.has("verifyKey") {
		if verifiers, err = c.keys("verifyKey", false); err != nil {
			return Result{}, err
		}
	}
	dst, err := c.argPath("path", plainName(src))
	if err != nil {
		return Result{}, err
	}
	if err := c.transform(src, dst, func(in io.Reader, w io.Writer) error {
		return readSigned(in, w, kr, verifiers)
	}); err != nil {
		return Result{}, fmt.Errorf("decrypt %s: %w", src, err)
	}
	return Result{Path: dst, Output: "decrypted to " + dst}, nil
}

// transform writes dst (through write) from what fn makes of src.
func (c *call) transform(src, dst string, fn func(in io.Reader, w io.Writer) error) error {
	in, err := c.root.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return c.write(dst, func(w io.Writer) error { return fn(in, w) })
}

// SIGN: detached (default) writes the signature at path (default FILE.sig;
// armored with "armor": true) and the chain stays on the file; inline
// writes a signed message at path (default FILE.gpg), which the chain
// follows.
func runSign(_ context.Context, c *call) (Result, error) {
	src, err := c.file()
	if err != nil {
		return Result{}, err
	}
	kr, err := c.keys("key", true)
	if err != nil {
		return Result{}, err
	}
	signer := kr[0]
	on := c.args.flag("armor", false)
	if strings.EqualFold(c.args.str("mode"), "inline") {
		dst, err := c.argPath("path", src+".gpg")
		if err != nil {
			return Result{}, err
		}
		err = c.transform(src, dst, func(in io.Reader, w io.Writer) error {
			aw, closeArmor, err := armored(w, on, "PGP MESSAGE")
			if err != nil {
				return err
			}
			hints := &openpgp.FileHints{FileName: filepath.Base(src), IsBinary: true}
			sw, err := openpgp.Sign(aw, signer, hints, nil)
			if err != nil {
				return err
			}
			if _, err := io.Copy(sw, in); err != nil {
				return err
			}
			return errors.Join(sw.Close(), closeArmor())
		})
		if err != nil {
			return Result{}, err
		}
		return Result{Path: dst, Output: "signed message " + dst}, nil
	}
	dst, err := c.argPath("path", src+".sig")
	if err != nil {
		return Result{}, err
	}
	err = c.transform(src, dst, func(in io.Reader, w io.Writer) error {
		if on {
			return openpgp.ArmoredDetachSign(w, signer, in, nil)
		}
		return openpgp.DetachSign(w, signer, in, nil)
	})
	if err != nil {
		return Result{}, err
	}
	return Result{Output: "signature " + dst}, nil
}

// VERIFY: detached (default) refuses the file unless the signature (default
// FILE.sig, armored or binary) is a good one by one of the keys; inline
// checks a signed message and writes its content at path (default FILE
// without .gpg, .pgp or .asc), which the chain follows.
func runVerify(_ context.Context, c *call) (Result, error) {
	src, err := c.file()
	if err != nil {
		return Result{}, err
	}
	kr, err := c.keys("key", false)
	if err != nil {
		return Result{}, err
	}
	if strings.EqualFold(c.args.str("mode"), "inline") {
		dst, err := c.argPath("path", plainName(src))
		if err != nil {
			return Result{}, err
		}
		if err := c.transform(src, dst, func(in io.Reader, w io.Writer) error {
			return readSigned(in, w, nil, kr)
		}); err != nil {
			return Result{}, fmt.Errorf("verify %s: %w", src, err)
		}
		return Result{Path: dst, Output: "verified; content in " + dst}, nil
	}
	sigPath, err := c.argPath("signature", src+".sig")
	if err != nil {
		return Result{}, err
	}
	sigFile, err := c.root.Open(sigPath)
	if err != nil {
		return Result{}, fmt.Errorf("signature: %w", err)
	}
	defer sigFile.Close()
	sig, err := dearmor(sigFile)
	if err != nil {
		return Result{}, fmt.Errorf("signature %s: %w", sigPath, err)
	}
	in, err := c.root.Open(src)
	if err != nil {
		return Result{}, err
	}
	defer in.Close()
	signer, err := openpgp.CheckDetachedSignature(kr, in, sig, nil)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %s does not verify %s: %v", ErrBadSignature, sigPath, src, err)
	}
	return Result{Output: fmt.Sprintf("%s: good signature by key %X", src, signer.PrimaryKey.KeyId)}, nil
}

// ImportedKey is an OpenPGP key as the gateway stores it (Import).
type ImportedKey struct {
	Armored     string // to seal: a private key without its passphrase protection
	Private     bool
	Fingerprint string // upper-case hex
}

// ErrKeyPassphrase marks a private key Import cannot open: protected and
// no passphrase given, or the passphrase does not open it.
var ErrKeyPassphrase = errors.New("key passphrase")

// Import reads one armored OpenPGP key for storing. A private key
// protected by a passphrase is opened with passphrase and stored without
// that protection: what guards it at rest is the seal of the secrets
// store, as for every other secret, and the passphrase itself is kept
// nowhere. The tasks then need no passphrase at run time. A passphrase
// given with a key that has none is ignored. Errors never contain the
// passphrase.
func Import(armoredKey, passphrase string) (ImportedKey, error) {
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armoredKey))
	if err != nil || len(ring) != 1 {
		return ImportedKey{}, fmt.Errorf("not one armored OpenPGP key (%d keys, %v)", len(ring), err)
	}
	e := ring[0]
	k := ImportedKey{Armored: armoredKey, Private: e.PrivateKey != nil, Fingerprint: strings.ToUpper(fmt.Sprintf("%x", e.PrimaryKey.Fingerprint))}
	if !k.Private || usablePrivate(e) == nil {
		return k, nil
	}
	if passphrase == "" {
		return ImportedKey{}, fmt.Errorf("%w: the private key is protected by a passphrase; give it (\"passphrase\")", ErrKeyPassphrase)
	}
	if err := e.DecryptPrivateKeys([]byte(passphrase)); err != nil {
		return ImportedKey{}, fmt.Errorf("%w: the passphrase does not open the private key", ErrKeyPassphrase)
	}
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PrivateKeyType, nil)
	if err != nil {
		return ImportedKey{}, err
	}
	if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
		return ImportedKey{}, fmt.Errorf("write the opened private key: %w", err)
	}
	if err := w.Close(); err != nil {
		return ImportedKey{}, err
	}
	k.Armored = b.String()
	return k, nil
}
