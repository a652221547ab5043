package ui

import "github.com/taskflow-dev/taskflow"

// auditOptions records who took an action and why in its audit event.
func auditOptions(operator, reason string) []taskflow.MutationOption {
	return []taskflow.MutationOption{taskflow.WithAudit(operator, reason)}
}
