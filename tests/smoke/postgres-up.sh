#!/usr/bin/env bash
# Start the throwaway PostgreSQL of tests/smoke/postgres.yaml in a cluster and wait until it answers.
#
#   tests/smoke/postgres-up.sh [--context CONTEXT] [--namespace NAMESPACE]
#
# The Secret `postgres` (key `password`) is made once with a random password; the password never appears
# in a process's arguments or in any output (it goes to kubectl on stdin). Safe to run again.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
context=()
namespace=default
while [ $# -gt 0 ]; do
    case $1 in
        --context) context=(--context "$2"); shift 2 ;;
        --namespace) namespace=$2; shift 2 ;;
        *) echo "postgres-up.sh: unknown argument '$1' (--context CONTEXT, --namespace NAMESPACE)" >&2; exit 2 ;;
    esac
done

k() { kubectl "${context[@]}" --namespace "$namespace" "$@"; }

kubectl "${context[@]}" create namespace "$namespace" --dry-run=client --output yaml \
    | kubectl "${context[@]}" apply --filename - >/dev/null

if ! k get secret postgres >/dev/null 2>&1; then
    password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    # printf is a shell builtin: the password reaches kubectl through a pipe, never through argv.
    printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: postgres\ntype: Opaque\nstringData:\n  password: "%s"\n' \
        "$password" | k apply --filename - >/dev/null
    unset password
fi

k apply --filename "$here/postgres.yaml" >/dev/null
k rollout status deployment/postgres --timeout=300s
