package taskflow

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxAuditText is the longest actor or reason WithAudit accepts, in bytes.
const maxAuditText = 1024

// auditNote is who made a mutation and why (see WithAudit).
type auditNote struct {
	actor, reason string
}

// WithAudit records who made a mutation and why: Manager.Cancel adds
// them to its cancelled event's payload as "actor" and "reason" (each left
// out when empty), so the audit log says who cancelled a flow. Each is at
// most 1024 bytes of UTF-8; a longer or invalid one makes the
// mutation fail with ErrInvalidData, writing nothing. Other mutations
// ignore it.
func WithAudit(actor, reason string) MutationOption {
	return func(m *mutation) { m.audit = &auditNote{actor: actor, reason: reason} }
}

// auditPayload is the payload of an event that carries the mutation's
// audit note: {} without one.
func (m mutation) auditPayload() (json.RawMessage, error) {
	if m.audit == nil {
		return json.RawMessage(`{}`), nil
	}
	fields := make([]string, 0, 2)
	for _, f := range []struct{ name, v string }{{"actor", m.audit.actor}, {"reason", m.audit.reason}} {
		if strings.TrimSpace(f.v) == "" {
			continue
		}
		if len(f.v) > maxAuditText || !utf8.ValidString(f.v) {
			return nil, fmt.Errorf("%w: the audit %s is %d bytes or not UTF-8 (at most %d bytes of UTF-8)",
				ErrInvalidData, f.name, len(f.v), maxAuditText)
		}
		fields = append(fields, jsonString(f.name)+":"+jsonString(f.v))
	}
	return json.RawMessage("{" + strings.Join(fields, ",") + "}"), nil
}
