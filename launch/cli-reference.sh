#!/usr/bin/env bash
# Writes Docs/cli-reference.md from the binary's own --help, so the reference cannot drift from the
# code (CommandLineTests.testCLIReferenceIsTheHelpOfTheBinary compares the two).
#   launch/cli-reference.sh [OUTPUT]   # default Docs/cli-reference.md; the binary from launch/env.sh
set -euo pipefail
output=$(realpath -m "${1:-$(dirname "$0")/../Docs/cli-reference.md}")
cd "$(dirname "$0")/.."
source launch/env.sh
export COLUMNS=100
{
    echo "# CLI reference"
    echo
    echo "The \`--help\` of every command, as the binary prints it (\`launch/cli-reference.sh\` writes this"
    echo "page; a test fails when it differs from the binary's help). [usage](usage.md) explains how the"
    echo "options fit together."
    for command in "" init train eval predict tokenize inspect report bench commbench selftest; do
        echo
        echo "## finetune-dist${command:+ $command}"
        echo
        echo '```'
        "$FINETUNE_DIST_BIN" ${command:+$command} --help | sed -e 's/[[:space:]]*$//'
        echo '```'
    done
} > "$output"
echo "wrote $output" >&2
