using Coordinator.Grains.Lightning.Payments;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Lightning.Agent;

/// <summary>Pay-per-job jobs as the API sees them: created with their eval invoice, read through their grain (which advances them).</summary>
public sealed class AgentJobs(AgentJobStore store, ILightningNode node, IGrainFactory grains, IOptions<AgentOptions> options)
{
    /// <summary>
    /// Creates a job awaiting its eval fee: the invoice first, then the row that names it, written whether or not the
    /// client is still there, so that no invoice the node made is left without its job.
    /// </summary>
    public async Task<AgentJobRow> CreateAsync(string request, CancellationToken cancellationToken = default)
    {
        var id = AgentJobStore.NewId();
        var invoice = await node.CreateInvoiceAsync(options.Value.EvalFeeSats, $"Lightning agent job {id}: eval fee", cancellationToken);
        return await store.CreateAsync(id, request, invoice.PaymentHash, invoice.PaymentRequest, invoice.AmountSats, CancellationToken.None);
    }

    /// <summary>The job after advancing it as far as it goes now; null when there is no such job.</summary>
    public Task<AgentJobRow?> AdvanceAsync(string id) => grains.GetGrain<ILightningJobGrain>(id).AdvanceAsync();
}
