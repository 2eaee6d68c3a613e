// Alert rules an operator of this service wants on day one, on what the app really writes to Application
// Insights (shared/telemetry.py; the Python worker exports OpenTelemetry metrics to customMetrics and log lines to
// traces, with PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true):
//   - failed Graph calls: counter provisioning.graph.calls with dimension status = failed (every attempt that
//     ended failed: a Graph 4xx/5xx after its retries, and a 200 whose result was Failure);
//   - throttling: counter provisioning.graph.throttles (one per 429 from Graph; the shared limiter should keep it
//     near zero, so a steady stream means the rate limit or its scope is wrong for the tenant);
//   - poison messages: the Functions host's warning "Message has reached MaxDequeueCount of 5. Moving message to
//     queue 'provisioning-work-poison'." and the app's own "queued request rejected and moved to the poison
//     queue" (provisioning-requests-poison). Storage has no per-queue length metric, so the moves are counted.
// Queries are on the workspace-based Application Insights resource (its classic table names). They return rows
// with their timestamp, not a summary: the alert service aggregates them itself (timeAggregation over the window,
// of metricMeasureColumn, or Count of rows), and it needs the time column to do that. An action group
// with one email receiver is created only when alertEmail is set; without it the alerts still fire and show in
// the portal (Monitor > Alerts).
param namePrefix string
param location string
param tags object = {}

@description('Resource id of the Application Insights component the app writes to.')
param applicationInsightsId string

@description('Email address notified when an alert fires; empty: no action group.')
param alertEmail string = ''

@description('Failed Graph calls in 15 minutes above which the failed-calls alert fires (0: any failed call).')
@minValue(0)
param failedCallsThreshold int = 0

@description('429 answers from Graph in 15 minutes above which the throttling alert fires.')
@minValue(0)
param throttlesThreshold int = 5

var actionGroupIds = empty(alertEmail) ? [] : [
  actionGroup.id
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${namePrefix}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'provisionod'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource failedCallsAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${namePrefix}-graph-failed-calls'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Provisioning: failed Graph calls'
    description: 'provisionOnDemand calls ended failed (metric provisioning.graph.calls, status failed). Find them with GET /api/provision?status=failed; the ledger row says errorCode and recommendedAction.'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    scopes: [
      applicationInsightsId
    ]
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == "provisioning.graph.calls" | where tostring(customDimensions["status"]) == "failed" | extend failedCalls = valueSum'
          timeAggregation: 'Total'
          metricMeasureColumn: 'failedCalls'
          operator: 'GreaterThan'
          threshold: failedCallsThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

resource throttlingAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${namePrefix}-graph-throttling'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Provisioning: Graph throttling (429)'
    description: 'Graph answered 429 to provisionOnDemand (metric provisioning.graph.throttles). The shared limiter should prevent this: check GRAPH_RATE_LIMIT and GRAPH_RATE_SCOPE, and other callers of provisionOnDemand in the tenant.'
    severity: 3
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    scopes: [
      applicationInsightsId
    ]
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == "provisioning.graph.throttles" | extend throttles = valueSum'
          timeAggregation: 'Total'
          metricMeasureColumn: 'throttles'
          operator: 'GreaterThan'
          threshold: throttlesThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

resource poisonMessagesAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${namePrefix}-poison-messages'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Provisioning: messages moved to a poison queue'
    description: 'A message went to provisioning-requests-poison (invalid request, recorded as rejected) or provisioning-work-poison (a work item failed 5 times). See GET /api/poison; requeue with POST /api/poison/requeue once the cause is fixed.'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    scopes: [
      applicationInsightsId
    ]
    criteria: {
      allOf: [
        {
          query: 'traces | where (message startswith "Message has reached MaxDequeueCount" and message contains "provisioning-") or message == "queued request rejected and moved to the poison queue"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

output actionGroupId string = empty(alertEmail) ? '' : actionGroup.id
output alertRuleNames array = [
  failedCallsAlert.name
  throttlingAlert.name
  poisonMessagesAlert.name
]
