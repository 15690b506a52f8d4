// Package config loads a pipeline config file: YAML parsed with positions, ${VAR} expanded
// from the environment, every key checked against the schema that core and each plugin
// declare, every problem reported at once with its file, line and key path.
//
// The file is parsed with yaml.v3 rather than through viper's settings map because viper
// folds keys to lower case (env: {AWS_ACCESS_KEY_ID: ...} would lose its meaning) and drops
// line numbers; viper binds the command line's flags and NIGHTJAR_* variables instead.
package config
