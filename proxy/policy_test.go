package proxy

import "testing"

func TestPolicyDependsOnMore(t *testing.T) {
	// Expressions as pg_get_expr prints them.
	tests := []struct {
		using string
		want  bool
	}{
		{"true", false},
		{"(id > 3)", false},
		{"(owner = CURRENT_USER)", false},
		{"(owner = (CURRENT_USER)::text)", false},
		{"(owner = SESSION_USER)", false},
		{"(status = ANY (ARRAY['a'::text, 'b'::text]))", false},
		{"(team IN ( SELECT memberships.team FROM memberships WHERE (memberships.member = CURRENT_USER)))", true},
		{"(EXISTS ( SELECT 1 FROM grants g WHERE (g.doc = docs.id)))", true},
		{"(published_at < now())", true},
		{"(valid_until > CURRENT_TIMESTAMP)", true},
		{"(day = CURRENT_DATE)", true},
		{"(tenant = current_setting('app.tenant'::text))", false},
		{"(tenant_id = (current_setting('app.tenant'::text, true))::integer)", false},
		{"(tenant = current_setting('it''s'::text))", false},
		{"(app = current_setting('application_name'::text))", true}, // not in keys
		{"(app = current_setting('Application_Name'::text, true))", true},
		{"(tenant = current_setting(name_of(id)))", true},
		{"(tenant = current_setting('app.tenant'::text) AND (ts < now()))", true},
		{"(tenant = auth.uid())", true},
		{"(tenant = \"Auth\".\"Uid\"())", true},
	}
	for _, tt := range tests {
		if got := policyDependsOnMore(tt.using); got != tt.want {
			t.Errorf("policyDependsOnMore(%q) = %v; want %v", tt.using, got, tt.want)
		}
	}
}
