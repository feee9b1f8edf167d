using System.ComponentModel.DataAnnotations;

namespace Coordinator.Grains.Receipts;

/// <summary>Receipts for completed jobs, bound from the <c>Receipts</c> configuration section.</summary>
public sealed class ReceiptOptions
{
    public const string Section = "Receipts";

    /// <summary>
    /// Whether each completed job gets a signed receipt, written in its completion's transaction. Default: true. Off only to
    /// measure what receipts cost (bench/); a grid that runs without them has jobs no receipt will ever cover.
    /// </summary>
    public bool Enabled { get; set; } = true;

    /// <summary>The receipt's <c>unit_type</c>; its <c>units</c> are always the job's seconds from start to completion. Default: <c>gpu_seconds</c> (AITBC's).</summary>
    [Required, MinLength(1), MaxLength(64)]
    public string UnitType { get; set; } = "gpu_seconds";

    /// <summary>The receipt's <c>price</c> per unit: price = units × this, rounded to 6 decimals. Default: 0.02 (AITBC's).</summary>
    [Range(0, 1_000_000)]
    public decimal PricePerUnit { get; set; } = 0.02m;
}
