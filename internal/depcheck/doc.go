// Package depcheck enforces the dependency direction of the design
// (../shared/DESIGN.md, "Packages"): kernels imports nothing of ours, models
// only kernels, and nothing but cmd/ and tests imports worker or
// coordinator. The rules live in Rules; the test walks the module's source
// and names, for each import that breaks a rule, the importing file, the
// import and the rule.
package depcheck
