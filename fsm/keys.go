package fsm

// OpenPGP keys the rules' tasks use (ENCRYPT, DECRYPT, SIGN, VERIFY name
// them), stored sealed like the other secrets (version 3).
const (
	OpKeyPut    Op = "key.put"
	OpKeyDelete Op = "key.delete"
)

// PGPKey is an armored OpenPGP key (public, or private with its public
// part) under a name; Armored is sealed by the proposer.
type PGPKey struct {
	Name        string `json:"name"`
	Private     bool   `json:"private"`
	Fingerprint string `json:"fingerprint"`
	Armored     string `json:"armored"`
}
