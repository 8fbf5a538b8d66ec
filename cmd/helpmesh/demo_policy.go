package main

import (
	"context"
	"fmt"
	"net/http"
)

// demoPolicyNames names the default policy's emergency numbers in each of
// its languages, so that the demo's Norwegian chat page says "Medisinsk
// nødhjelp: 113". The default policy itself cannot carry them: it is the
// roster's state before the first log entry (consensus.DefaultPolicy).
var demoPolicyNames = map[string]any{
	"emergency_numbers": []map[string]any{
		{"name": "Medical emergency", "number": "113", "names": map[string]string{
			"nb": "Medisinsk nødhjelp", "nn": "Medisinsk naudhjelp", "en": "Medical emergency",
			"fr": "Urgences médicales", "de": "Medizinischer Notruf",
		}},
		{"name": "Police", "number": "112", "names": map[string]string{
			"nb": "Politi", "nn": "Politi", "en": "Police", "fr": "Police", "de": "Polizei",
		}},
	},
}

// seedPolicy writes the demo's emergency-number names the way a
// coordinator would: a PATCH of the policy (docs/api.md).
func seedPolicy(ctx context.Context, client *adminClient) error {
	if err := client.do(ctx, http.MethodPatch, "/v1/policy", demoPolicyNames, nil); err != nil {
		return fmt.Errorf("seed policy: %w", err)
	}
	return nil
}
