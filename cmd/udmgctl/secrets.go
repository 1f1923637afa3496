package main

import (
	"encoding/json"
	"fmt"

	"github.com/udmg/gateway/httpapi/wire"
)

// secretsRotate is `udmgctl secrets rotate`: a new data key for the
// cluster, every sealed value resealed under it in one committed change.
func (c *cli) secretsRotate([]string) error {
	resp, err := c.call("POST", "/api/secrets/rotate", nil)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(resp.body)
		return nil
	}
	var rot wire.SecretsRotation
	if err := json.Unmarshal(resp.body, &rot); err != nil {
		return fmt.Errorf("POST /api/secrets/rotate: unexpected answer: %w", err)
	}
	fmt.Fprintf(c.stdout, "secrets key rotated: generation %d, %d sealed values resealed\n", rot.Generation, rot.Resealed)
	return nil
}
