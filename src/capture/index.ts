/** Frame sources: cameras (ffmpeg, fswebcam), folders, videos and a synthetic scene. */
export * from './types';
export { MjpegSplitter } from './mjpeg';
export { FfmpegSource, ffmpegArgs, inputKind } from './ffmpeg';
export { DirectorySource } from './dir';
export { WebcamSource } from './webcam';
export { SyntheticSource, SyntheticScene, DEFAULT_SCENE_CLASSES } from './synthetic';
export { SupervisedSource } from './supervisor';
export { parseSourceSpec, specToString, createSource, createRawSource, resolveAuto, listCameras, which, SOURCE_SYNTAX } from './factory';
export type { SourceSpec, SourceRequest, CaptureOptions, AutoProbe } from './factory';
