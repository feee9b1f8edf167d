using System.ComponentModel.DataAnnotations;
using Coordinator.Grains;

namespace Coordinator.Api.Gemini;

/// <summary>
/// Settings of the spec's <c>/api/gemini</c> conversations and images, bound from <c>Lightning:Gemini</c>. The spec names
/// them after Gemini; here they are grid jobs, so the models are the grid's.
/// </summary>
public sealed class GeminiOptions : IValidatableObject
{
    public const string Section = "Lightning:Gemini";

    /// <summary>
    /// The spec's default model name (<c>SendGeminiMessageBody.model</c>), taken as another name for
    /// <see cref="DefaultModel"/>: clients written for the spec send it, and no grid worker serves a model of that name.
    /// </summary>
    public const string SpecDefaultModel = "gemini-3-flash-preview";

    /// <summary>
    /// The model a conversation's reply runs on when the message names none. A name without a tag is a family job (any
    /// <c>llama3.2:*</c>), one with a tag exact, as on <c>/v1/chat/completions</c>. Default: <c>llama3.2</c>.
    /// </summary>
    public string DefaultModel { get; set; } = "llama3.2";

    /// <summary>
    /// The model image jobs run on. Workers advertise their image models as <c>image:&lt;model&gt;</c>, so the default,
    /// <c>image</c>, is the family of every image model (any worker with an image backend); <c>image:dall-e-3</c> asks for
    /// one. Default: <c>image</c>.
    /// </summary>
    public string ImageModel { get; set; } = ImageJobs.Family;

    /// <summary>
    /// How long a reply or an image may take: a job no worker has taken this long after its submission is cancelled, and
    /// one taken runs under this as its <c>timeout_seconds</c>. Default: 300 s.
    /// </summary>
    [Range(1, 86_400)]
    public int TimeoutSeconds { get; set; } = 300;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!ModelNames.IsValid(DefaultModel))
        {
            yield return new ValidationResult($"{Section}:DefaultModel ('{DefaultModel}') is not a valid model name (letters, digits and . _ : / @ + -).", [nameof(DefaultModel)]);
        }
        if (!ModelNames.IsValid(ImageModel) || ModelNames.FamilyOf(ImageModel) != ImageJobs.Family)
        {
            yield return new ValidationResult(
                $"{Section}:ImageModel ('{ImageModel}') must be '{ImageJobs.Family}' (any image model) or '{ImageJobs.Family}:<model>': workers advertise their image models so.",
                [nameof(ImageModel)]);
        }
    }
}

/// <summary>
/// How an image job differs from a text job, without a new column or a new dispatch rule: workers with an image backend
/// advertise each image model as <c>image:&lt;model&gt;</c> (the family <c>image</c>), so the ordinary matching hands image
/// jobs only to them; the job's <c>params.kind</c> says <c>image</c>, and the worker answers the image as a <c>data:</c>
/// URL (<c>data:image/png;base64,…</c>) in the result's <c>output</c>.
/// </summary>
public static class ImageJobs
{
    /// <summary>The family of every image model, and the prefix a worker puts before its image models' names.</summary>
    public const string Family = "image";

    /// <summary>The job's <c>params.kind</c>.</summary>
    public const string Kind = "image";

    /// <summary>The image the worker answered, or null when its output is not a base64 <c>data:</c> URL.</summary>
    public static (string Base64, string MimeType)? Parse(string output)
    {
        const string marker = ";base64,";
        if (!output.StartsWith("data:", StringComparison.Ordinal)) return null;
        var at = output.IndexOf(marker, StringComparison.Ordinal);
        if (at < 0) return null;
        var mimeType = output[5..at];
        var base64 = output[(at + marker.Length)..];
        if (mimeType.Length == 0 || base64.Length == 0 || !System.Buffers.Text.Base64.IsValid(base64)) return null;
        return (base64, mimeType);
    }
}
