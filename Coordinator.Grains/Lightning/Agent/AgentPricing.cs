namespace Coordinator.Grains.Lightning.Agent;

/// <summary>What a job costs and what it is charged, in USD and in sats (../shared/specs/README.md, "Lightning agent").</summary>
public static class AgentPricing
{
    private const decimal SatsPerBtc = 100_000_000m;

    /// <summary>Token cost: <paramref name="tokens"/> at <paramref name="usdPerThousandTokens"/>, no infrastructure, no margin.</summary>
    public static decimal TokenCostUsd(long tokens, decimal usdPerThousandTokens) => tokens / 1000m * usdPerThousandTokens;

    /// <summary>The charge: token cost plus infrastructure, with the margin applied.</summary>
    public static decimal ChargeUsd(decimal tokenCostUsd, decimal infrastructureUsd, decimal marginPercent) =>
        (tokenCostUsd + infrastructureUsd) * (1 + marginPercent / 100m);

    /// <summary>An invoice amount: <paramref name="usd"/> at <paramref name="btcUsd"/>, rounded up, at least 1 sat.</summary>
    public static long InvoiceSats(decimal usd, decimal btcUsd) => Math.Max(1, Sats(usd, btcUsd));

    /// <summary><paramref name="usd"/> in sats at <paramref name="btcUsd"/>, rounded up (0 for 0).</summary>
    public static long Sats(decimal usd, decimal btcUsd)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(btcUsd);
        ArgumentOutOfRangeException.ThrowIfNegative(usd);
        return (long)Math.Ceiling(usd / btcUsd * SatsPerBtc);
    }

    /// <summary>Refund owed = max(0, work_sats − ceil(actual_charge_usd / locked_btc_price × 1e8)).</summary>
    public static long RefundSats(long workSats, decimal actualChargeUsd, decimal lockedBtcUsd) =>
        Math.Max(0, workSats - Sats(actualChargeUsd, lockedBtcUsd));
}
