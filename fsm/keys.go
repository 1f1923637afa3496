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

// Named secrets the tasks' arguments refer to (#SECRET:name# in WEBHOOK
// headers and EXEC arguments), so that a rule holds the reference and
// never the value; stored sealed like the other secrets (version 3).
const (
	OpSecretPut    Op = "secret.put"
	OpSecretDelete Op = "secret.delete"
)

// Secret is a named value; Value is sealed by the proposer.
type Secret struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}
