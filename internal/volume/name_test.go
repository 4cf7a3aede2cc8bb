package volume

import (
	"regexp"
	"testing"
)

// TestValidNameMatchesDockerRule checks the hand-written check against Docker's regexp.
func TestValidNameMatchesDockerRule(t *testing.T) {
	re := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)
	for _, s := range []string{"", "a", "ab", "a-", "-a", "_a", ".a", "a.b_c-d", "A9", "a b", "a/b", "aé", "0", "00", "a\n"} {
		if got, want := ValidName(s), re.MatchString(s); got != want {
			t.Errorf("ValidName(%q) = %v, Docker's rule says %v", s, got, want)
		}
	}
}
