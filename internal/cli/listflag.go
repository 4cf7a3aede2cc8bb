package cli

import (
	"strings"

	"github.com/spf13/pflag"
)

// listValue is pflag's stringArray (each use of the flag adds one value, commas are not split)
// without its cost: pflag's String builds a CSV writer with a 4 KiB buffer for every flag
// defined, and the CLI defines over a hundred list flags before it parses its arguments; that was
// a tenth of every command's start-up.
type listValue struct {
	p       *[]string
	changed bool
}

func (v *listValue) Set(s string) error {
	if !v.changed {
		*v.p = []string{s}
		v.changed = true
		return nil
	}
	*v.p = append(*v.p, s)
	return nil
}

func (v *listValue) Type() string { return "stringArray" }

func (v *listValue) String() string {
	if len(*v.p) == 0 {
		return "[]"
	}
	return "[" + strings.Join(*v.p, ",") + "]"
}

// Append, Replace and GetSlice make it a pflag.SliceValue, as stringArray is.
func (v *listValue) Append(s string) error { *v.p = append(*v.p, s); return nil }

func (v *listValue) Replace(s []string) error { *v.p = append([]string(nil), s...); return nil }

func (v *listValue) GetSlice() []string { return *v.p }

// listVarP defines a repeatable string flag, like pflag's StringArrayVarP.
func listVarP(f *pflag.FlagSet, p *[]string, name, shorthand string, value []string, usage string) {
	*p = value
	f.VarP(&listValue{p: p}, name, shorthand, usage)
	if len(value) == 0 {
		// pflag shows a default in help unless it is its type's zero; it knows that "[]" is
		// stringArray's zero only for its own type.
		f.Lookup(name).DefValue = ""
	}
}
