"""simxen.analysis"""
