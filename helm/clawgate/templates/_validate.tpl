{{/*
Checks of values that a schema cannot express. Included once (configmap.yaml);
a failed check stops rendering with a message naming the value to fix.
*/}}
{{- define "clawgate.validate" -}}
{{- range $component := list "edge" "auth" "runner" "session" "cron" "channel" }}
{{- $c := index $.Values $component }}
{{- if $c.enabled }}
{{- $need := add (int $c.preStopSleepSeconds) (int $c.shutdownSeconds) }}
{{- if lt (int $c.terminationGracePeriodSeconds) (int $need) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be at least %s.preStopSleepSeconds + %s.shutdownSeconds (%d): Kubernetes counts the preStop sleep against the grace period" $component (int $c.terminationGracePeriodSeconds) $component $component (int $need)) }}
{{- end }}
{{- if and $c.pdb.enabled (ne (toString $c.pdb.maxUnavailable) "") (ne (toString $c.pdb.minAvailable) "") }}
{{- fail (printf "%s.pdb: set only one of maxUnavailable and minAvailable" $component) }}
{{- end }}
{{- if and $c.autoscaling.enabled (not $c.autoscaling.targetCPUUtilizationPercentage) (not $c.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail (printf "%s.autoscaling: set targetCPUUtilizationPercentage and/or targetMemoryUtilizationPercentage" $component) }}
{{- end }}
{{- if and $c.autoscaling.enabled (gt (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas must not exceed maxReplicas" $component) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.edge.enabled (not (and .Values.auth.enabled .Values.runner.enabled .Values.session.enabled)) }}
{{- fail "the edge calls auth, runner and session: enable all three (auth.enabled, runner.enabled, session.enabled)" }}
{{- end }}
{{- end }}
