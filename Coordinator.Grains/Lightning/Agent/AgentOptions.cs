using System.ComponentModel.DataAnnotations;
using Coordinator.Grains.Lightning.Bolt11;

namespace Coordinator.Grains.Lightning.Agent;

/// <summary>
/// The Lightning agent (issue #18): which grid models evaluate and do the work, and how a job is priced. Section
/// <c>Lightning:Agent</c>.
/// </summary>
public sealed class AgentOptions : IValidatableObject
{
    public const string Section = "Lightning:Agent";

    /// <summary>The eval fee: the first invoice of a pay-per-job job (the spec's fixed 10 sats).</summary>
    [Range(1, 1_000_000)]
    public long EvalFeeSats { get; set; } = 10;

    /// <summary>The grid model that evaluates a request (accept or reject, and a token estimate).</summary>
    [Required]
    public string EvalModel { get; set; } = "llama3.2";

    /// <summary>The grid model that does the work.</summary>
    [Required]
    public string WorkModel { get; set; } = "llama3.2";

    /// <summary>USD per 1,000 tokens (input and output) for models not in <see cref="UsdPerThousandTokensByModel"/>.</summary>
    [Range(typeof(decimal), "0", "1000")]
    public decimal UsdPerThousandTokens { get; set; } = 0.002m;

    /// <summary>USD per 1,000 tokens by model name.</summary>
    public Dictionary<string, decimal> UsdPerThousandTokensByModel { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The infrastructure cost of one job, in USD, added before the margin.</summary>
    [Range(typeof(decimal), "0", "1000")]
    public decimal InfrastructureUsd { get; set; } = 0.0005m;

    /// <summary>The originator's margin, in percent, applied to token cost plus infrastructure.</summary>
    [Range(typeof(decimal), "0", "1000")]
    public decimal MarginPercent { get; set; } = 20m;

    /// <summary>The grid jobs' timeout (eval and work), in seconds.</summary>
    [Range(5, 86_400)]
    public int JobTimeoutSeconds { get; set; } = 300;

    /// <summary>The largest request text, in UTF-8 bytes.</summary>
    [Range(1, 1_048_576)]
    public int MaxRequestBytes { get; set; } = 16_384;

    /// <summary>The token estimate used when the evaluator gives none, and the most it may give.</summary>
    [Range(1, 10_000_000)]
    public long MaxEstimatedTokens { get; set; } = 100_000;

    /// <summary>
    /// The network refunds are paid on: a refund invoice of another network is refused. Unset: regtest (<c>lnbcrt</c>) in stub
    /// mode, where invoices are made for a local node, and Bitcoin mainnet (<c>lnbc</c>) with LNbits. One of Bitcoin, Testnet,
    /// Signet, Regtest, Simnet.
    /// </summary>
    public Bolt11Network? Network { get; set; }

    /// <summary>The refund network: <see cref="Network"/>, else the default for the node (<paramref name="isStub"/>: regtest).</summary>
    public Bolt11Network RefundNetwork(bool isStub) => Network ?? (isStub ? Bolt11Network.Regtest : Bolt11Network.Bitcoin);

    /// <summary>USD per 1,000 tokens for <paramref name="model"/>.</summary>
    public decimal RateOf(string model) => UsdPerThousandTokensByModel.TryGetValue(model, out var rate) ? rate : UsdPerThousandTokens;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        foreach (var (model, rate) in UsdPerThousandTokensByModel)
        {
            if (rate < 0) yield return new ValidationResult($"{Section}:UsdPerThousandTokensByModel:{model} ({rate}) must not be negative.");
        }
    }
}
