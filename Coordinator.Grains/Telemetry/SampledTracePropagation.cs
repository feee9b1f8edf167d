using System.Diagnostics;

namespace Coordinator.Grains.Telemetry;

/// <summary>
/// Carries a sampled trace across grain calls, so that one job's path (the HTTP request, the grain calls, their
/// statements) is one trace; in place of Orleans' <c>AddActivityPropagation()</c>. A call made inside a recorded (sampled)
/// activity carries its W3C context in the call's <see cref="RequestContext"/>, and the callee runs in a span of
/// <see cref="SourceName"/> under it. A call outside a sampled trace carries nothing and starts nothing.
/// </summary>
/// <remarks>
/// Orleans' filters start an activity on every grain call and write the caller's context into every call's request
/// context. With parent-based sampling, OpenTelemetry's SDK creates an activity (propagation only) for every call of an
/// unsampled trace all the same, so sampling 0.1 cost the node's CPU what 1.0 did (BENCHMARKS.md, "The cost of
/// telemetry"). Calls outside any request (timers, duties, background sends) are no longer the roots of traces of their
/// own, as Npgsql's statements outside a sampled trace are not traced (<c>GridServiceCollectionExtensions</c>).
/// </remarks>
public sealed class SampledTracePropagation : IOutgoingGrainCallFilter, IIncomingGrainCallFilter
{
    /// <summary>The activity source of the grain-call spans.</summary>
    public const string SourceName = "Coordinator.GrainCalls";

    private const string TraceParent = "traceparent";
    private const string TraceState = "tracestate";

    private static readonly ActivitySource Source = new(SourceName);

    public Task Invoke(IOutgoingGrainCallContext context) =>
        Activity.Current is { Recorded: true, IdFormat: ActivityIdFormat.W3C } current ? InvokeCarryingAsync(context, current) : context.Invoke();

    // Async, so that the request context set for this call is the caller's again once it returns.
    private static async Task InvokeCarryingAsync(IOutgoingGrainCallContext context, Activity current)
    {
        RequestContext.Set(TraceParent, current.Id!);
        if (current.TraceStateString is { } state) RequestContext.Set(TraceState, state);
        await context.Invoke();
    }

    public Task Invoke(IIncomingGrainCallContext context) =>
        RequestContext.Get(TraceParent) is string parent && Source.HasListeners()
            && ActivityContext.TryParse(parent, RequestContext.Get(TraceState) as string, isRemote: true, out var caller)
            ? InvokeInSpanAsync(context, caller)
            : context.Invoke();

    private static async Task InvokeInSpanAsync(IIncomingGrainCallContext context, ActivityContext caller)
    {
        using var span = Source.StartActivity(ActivityKind.Server, caller, name: $"{context.InterfaceName}/{context.MethodName}");
        if (span is { IsAllDataRequested: true })
        {
            span.SetTag("rpc.system", "orleans");
            span.SetTag("rpc.service", context.InterfaceName);
            span.SetTag("rpc.method", context.MethodName);
            span.SetTag("orleans.grain.id", context.TargetId.ToString());
        }
        try
        {
            await context.Invoke();
        }
        catch (Exception exception) when (span is { IsAllDataRequested: true })
        {
            span.SetStatus(ActivityStatusCode.Error, exception.GetType().Name);
            throw;
        }
    }
}
