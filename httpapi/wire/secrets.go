package wire

// SecretsRotation answers POST /api/secrets/rotate: the data key's new
// generation and how many sealed values were resealed under it.
type SecretsRotation struct {
	Generation uint64 `json:"generation"`
	Resealed   int    `json:"resealed"`
}
