import type { inference, voice } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import type { WorkerConfig } from './config.js';
import { WavSpeechTTS } from './groq-tts.js';

/**
 * The models a call's AgentSession runs on: Groq for STT and LLM through the OpenAI plugin, an
 * OpenAI-compatible speech endpoint for TTS, and the VAD bundled with @livekit/agents (it runs
 * offline). Text-only calls get the LLM alone.
 */
export function buildVoicePipeline(
  config: WorkerConfig,
  opts: { textOnly: boolean; vad?: inference.VAD },
): voice.AgentSessionOptions {
  const llm = openai.LLM.withGroq({
    model: config.groq.llmModel,
    apiKey: config.groq.apiKey,
    baseURL: config.groq.openaiBaseURL,
  });
  // Text comes in whole turns (textInputCallback): no VAD, and no turn detector to build, which
  // without a VAD the framework would only warn about and drop.
  if (opts.textOnly) return { llm, vad: null, turnHandling: { turnDetection: null } };
  return {
    llm,
    vad: opts.vad,
    stt: openai.STT.withGroq({
      model: config.groq.sttModel,
      apiKey: config.groq.apiKey,
      baseURL: config.groq.openaiBaseURL,
    }),
    tts: new WavSpeechTTS({
      baseURL: config.tts.baseURL,
      apiKey: config.tts.apiKey,
      model: config.tts.model,
      voice: config.tts.voice,
    }),
  };
}
